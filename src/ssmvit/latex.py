"""Build the paper PDF with latexmk (Debian's TeX Live)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .errors import UserError
from .fileio import atomic_path


def build_pdf(tex: Path, bib: Path, out_pdf: Path, timeout: int = 600) -> Path:
    """Compile ``tex`` in the folder of ``out_pdf`` (beside generated/ and ../results/figures).

    The template is copied there when the study writes elsewhere than paper/
    (e.g. the smoke study), so relative paths in the paper resolve the same way.
    The PDF appears at ``out_pdf`` only once latexmk has succeeded.
    """
    tex, bib, out_pdf = Path(tex), Path(bib), Path(out_pdf)
    if shutil.which("latexmk") is None:
        raise UserError("latexmk is not installed; run setup.sh (it installs Debian's TeX Live packages)")
    workdir = out_pdf.parent
    workdir.mkdir(parents=True, exist_ok=True)
    for src in (tex, bib):
        dst = workdir / src.name
        if src.resolve() != dst.resolve():
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
    build = workdir / "build"
    cmd = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
           "-outdir=build", tex.name]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    log = build / (tex.stem + ".log")
    if proc.returncode != 0 or not (build / (tex.stem + ".pdf")).exists():
        errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith(("!", "./", "l."))]
        print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n")
        first = errors[0] if errors else f"latexmk exited with {proc.returncode}"
        raise UserError(f"LaTeX build failed ({first}); see {log}")
    with atomic_path(out_pdf) as tmp:
        shutil.copyfile(build / (tex.stem + ".pdf"), tmp)
    return out_pdf


def pdf_pages(pdf: Path) -> int | None:
    """Page count via pdfinfo (poppler-utils), or None if it is not installed."""
    if shutil.which("pdfinfo") is None:
        return None
    out = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("Pages:"):
            return int(line.split()[1])
    return None
