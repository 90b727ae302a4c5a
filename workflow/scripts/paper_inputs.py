"""Stage: the LaTeX the paper inputs (paper/generated/*.tex), from the config and results/aggregate.

Writes macros.tex, accuracy_table.tex, efficiency_table.tex, paired_table.tex,
setup.tex, reproducibility.tex, figures.tex, results_text.tex,
discussion_text.tex and limitations_text.tex (see ssmvit.report). Figures are
referenced relative to the paper folder (default: the parent of --out-dir).
"""
from ssmvit import cli
from ssmvit.report import write_all


def main():
    p = cli.parser(__doc__)
    p.add_argument("--aggregate-dir", default="results/aggregate")
    p.add_argument("--figures-dir", default="results/figures")
    p.add_argument("--out-dir", default="paper/generated")
    p.add_argument("--paper-dir", default=None, help="folder LaTeX runs in (default: parent of --out-dir)")
    args = p.parse_args()
    written = write_all(args.config, args.aggregate_dir, args.figures_dir, args.out_dir, args.paper_dir,
                        args.overrides)
    for path in written:
        print(path)


if __name__ == "__main__":
    cli.run(main)
