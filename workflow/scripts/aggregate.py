"""Stage: per-run and per-profile files -> results/aggregate/*.csv and provenance.json."""
from pathlib import Path

from ssmvit import aggregate, cli
from ssmvit.fileio import write_csv, write_json


def main():
    p = cli.parser(__doc__)
    p.add_argument("--metrics", nargs="*", default=[], help="results/runs/*/metrics.json")
    p.add_argument("--summaries", nargs="*", default=[], help="results/runs/*/train_summary.json")
    p.add_argument("--histories", nargs="*", default=[], help="results/runs/*/history.csv")
    p.add_argument("--logits", nargs="*", default=[], help="results/runs/*/test_logits.npz")
    p.add_argument("--profiles", nargs="*", default=[], help="results/profile/*.json")
    p.add_argument("--out-dir", required=True)
    args = p.parse_args()
    cfg = cli.config_from(args)
    out = Path(args.out_dir)
    runs = aggregate.collect_runs(args.metrics, args.summaries)
    study = cfg["study"]
    acc = aggregate.accuracy_table(runs, study["profile_only"], study["resolutions"], study["models"])
    logit_files = {}
    for f in args.logits:
        dataset, res, model, seed = Path(f).parent.name.rsplit("_", 3)
        logit_files[(dataset, int(res), model, int(seed.lstrip("s")))] = f
    write_csv(out / "runs.csv", runs)
    write_csv(out / "accuracy.csv", acc)
    write_csv(out / "histories.csv", aggregate.collect_histories(args.histories))
    write_csv(out / "paired.csv", aggregate.paired_comparison(logit_files))
    write_csv(out / "efficiency.csv", aggregate.efficiency_table(args.profiles))
    write_json(out / "provenance.json", aggregate.provenance(args.config, args.summaries, args.profiles))
    print(f"aggregated {len(runs)} runs and {len(args.profiles)} profiles into {out}")


if __name__ == "__main__":
    cli.run(main)
