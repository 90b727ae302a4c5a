#!/usr/bin/env bash
# Install everything the pipeline and its tests need, with Python >= 3.10. Safe to rerun.
#   bash setup.sh && source .venv/bin/activate   # a virtual environment .venv/ in this checkout
#   PYTHON=python3.11 bash setup.sh              # another interpreter for .venv/
#   SSMVIT_USE_ACTIVE_ENV=1 bash setup.sh        # install into the active venv or conda environment instead
#   SKIP_TEX=1 bash setup.sh                     # no LaTeX (a GPU box that only trains)
#
# The torch story: pyproject.toml accepts any torch >= 2.1, so an environment keeps the build it
# has. Only where torch is missing does this script install the version the project is tested
# with (TORCH_VERSION, default 2.13.0; from PyPI that is a CUDA build on Linux, on this project's
# machines a local CPU build). Every later install is constrained to the torch that is
# there, so no dependency can replace it (medmnist's torchvision resolves to the matching release).
set -euo pipefail
cd "$(dirname "$0")"
if [ "${SSMVIT_USE_ACTIVE_ENV:-0}" = 1 ]; then
    PY=python3
else  # a venv of our own: nothing the machine already has (and its pins) is touched
    [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
    PY=.venv/bin/python
fi
pip_install() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }

if ! "$PY" -c "import torch" 2>/dev/null; then
    pip_install "torch==${TORCH_VERSION:-2.13.0}"
fi
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
"$PY" -c "import torch; print('torch==' + torch.__version__)" > "$constraints"
pip_install -c "$constraints" -e ".[dev,workflow]"
"$PY" -m pip check --disable-pip-version-check

if [ "${SKIP_TEX:-0}" != 1 ] && ! command -v latexmk >/dev/null; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    if command -v apt-get >/dev/null && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            latexmk texlive-latex-base texlive-latex-recommended texlive-latex-extra \
            texlive-fonts-recommended poppler-utils >/dev/null
    else
        echo "note: no LaTeX here and no apt-get with root to install it; the paper stage needs latexmk and pdflatex" \
             "(TeX Live: your package manager, or https://tug.org/texlive/), or rerun with SKIP_TEX=1 to skip this check"
    fi
fi
echo "setup done: $("$PY" -c 'import torch, ssmvit; print("torch", torch.__version__, "| ssmvit", ssmvit.__version__)')"
[ "${SSMVIT_USE_ACTIVE_ENV:-0}" = 1 ] || echo "activate it: source .venv/bin/activate"
