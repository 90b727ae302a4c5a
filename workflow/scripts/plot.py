"""Stage: the paper's figures (PDF) from results/aggregate and the per-run confusion matrices.

Writes fixed names into --out-dir (see ssmvit.plots): curves_{dataset}.pdf,
confusion_{dataset}_{res}.pdf, throughput.pdf, vram.pdf, macs.pdf,
acc_vs_params.pdf, acc_vs_macs.pdf, and manifest.json listing what was drawn
(the paper includes exactly the figures the manifest lists).
--config/--set are accepted like every stage's; the figures depend only on the
aggregate files and the run folders.
"""
from ssmvit import cli
from ssmvit.plots import MANIFEST, make_all


def main():
    p = cli.parser(__doc__)
    p.add_argument("--aggregate-dir", default="results/aggregate")
    p.add_argument("--runs-dir", default="results/runs")
    p.add_argument("--out-dir", default="results/figures")
    args = p.parse_args()
    written = make_all(args.aggregate_dir, args.runs_dir, args.out_dir)
    for path in written:
        print(path)
    print(f"{len(written)} figure(s) written; list in {args.out_dir}/{MANIFEST}")


if __name__ == "__main__":
    cli.run(main)
