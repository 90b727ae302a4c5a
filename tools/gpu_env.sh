# Source this on a GPU box without network (e.g. a remote H200 reached through a job runner that
# copies the working tree): installs the wheels carried in .whl/ (see README, "Running the GPU
# stages on a remote GPU box") into build/site/ and puts them and this checkout's src/ on
# PYTHONPATH. The box's own torch is used. build/ is ignored by .gitignore, which a box that keeps
# build outputs between calls keeps (this project's H200 box removed folders that only
# .git/info/exclude ignores), so the wheels travel once: a later call without .whl/ reuses
# build/site/ and leaves the transfer's room for a dataset.
set -e
export PYTHONUNBUFFERED=1
site=$PWD/build/site
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
fi
if [ -d "$site" ]; then
    export PYTHONPATH=$site:$PWD/src${PYTHONPATH:+:$PYTHONPATH} PATH=$site/bin:$PATH
else
    export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
fi
# The pipeline's jobs need no installed package either: the workflow runs this checkout's
# workflow/bin/ssmvit (python3 -m ssmvit with src/ on PYTHONPATH).
set +e
