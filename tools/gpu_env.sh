# Source this on a GPU box without network (e.g. a remote H100 reached through a
# job runner that copies the working tree): installs the wheels carried in .whl/
# (see README, "Running the GPU stages on a remote GPU box") into /tmp/site and
# puts them and this checkout's src/ on PYTHONPATH. The box's own torch is used.
set -e
export PYTHONUNBUFFERED=1
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
fi
# The pipeline's jobs need no installed package either: the workflow runs this checkout's
# workflow/bin/ssmvit (python3 -m ssmvit with src/ on PYTHONPATH).
set +e
