"""Stage: compile paper/main.tex (with generated tables, macros and figures) into a PDF."""
import argparse

from ssmvit import cli
from ssmvit.latex import build_pdf, pdf_pages


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tex", default="paper/main.tex")
    p.add_argument("--bib", default="paper/references.bib")
    p.add_argument("--generated", default="paper/generated", help="must be beside --out (checked)")
    p.add_argument("--out", default="paper/main.pdf")
    args = p.parse_args()
    from pathlib import Path

    if Path(args.generated).resolve().parent != Path(args.out).resolve().parent:
        raise SystemExit(f"error: --generated {args.generated} must be in the folder of --out {args.out}")
    pdf = build_pdf(args.tex, args.bib, args.out)
    print(f"{pdf}: {pdf_pages(pdf)} pages")


if __name__ == "__main__":
    cli.run(main)
