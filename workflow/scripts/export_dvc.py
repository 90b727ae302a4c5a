"""Write dvc.yaml (or --out) from the Snakemake workflow for one study config."""
import argparse

from ssmvit import cli
from ssmvit.dvc_export import render
from ssmvit.fileio import write_text


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--configfile", default="config.yaml")
    p.add_argument("--out", default="dvc.yaml")
    p.add_argument("--check", action="store_true", help="exit 1 if --out differs from what would be written")
    args = p.parse_args()
    text = render(args.configfile, args.out)
    if args.check:
        from pathlib import Path

        current = Path(args.out).read_text() if Path(args.out).exists() else ""
        if current != text:
            raise SystemExit(f"error: {args.out} is stale; run python workflow/scripts/export_dvc.py "
                             f"--configfile {args.configfile} --out {args.out}")
        print(f"{args.out} is up to date")
        return
    write_text(args.out, text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli.run(main)
