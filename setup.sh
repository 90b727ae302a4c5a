#!/usr/bin/env bash
# Install everything the pipeline and its tests need, on a fresh Debian/Ubuntu
# machine with Python >= 3.10. Safe to rerun: it installs only what is missing.
#   PYTHON=python3.11 bash setup.sh     # another interpreter (or activate a venv first)
#   SKIP_TEX=1 bash setup.sh            # no LaTeX (a GPU box that only trains)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
pip_install() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }

# torch first and pinned: an unpinned torch pulled in by another package would
# fetch a multi-GB CUDA build. 2.13.0 is the CPU build on this project's machines;
# on a GPU machine install your CUDA build of torch before running this script.
if ! "$PY" -c "import torch" 2>/dev/null; then
    pip_install "torch==${TORCH_VERSION:-2.13.0}"
fi
# medmnist without its dependencies: its torchvision pin cannot import beside a
# local CPU torch ('operator torchvision::nms does not exist'), and we only use
# medmnist.info and medmnist.evaluator, which need no torchvision.
pip_install --no-deps "medmnist==3.0.2"
pip_install -e ".[dev,workflow]"

if [ "${SKIP_TEX:-0}" != 1 ] && ! command -v latexmk >/dev/null; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        latexmk texlive-latex-base texlive-latex-recommended texlive-latex-extra \
        texlive-fonts-recommended poppler-utils >/dev/null
fi
echo "setup done: $("$PY" -c 'import torch, ssmvit; print("torch", torch.__version__, "| ssmvit", ssmvit.__version__)')"
