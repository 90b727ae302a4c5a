"""Stage: official npz -> uint8 NCHW splits at one resolution, plus metadata JSON."""
from ssmvit import cli, paths
from ssmvit.datasets import preprocess, source_size_for


def main():
    p = cli.parser(__doc__)
    cli.add_run_args(p, model=False, seed=False)
    p.add_argument("--raw", default=None, help="default: data/raw/{dataset}_{source size}.npz")
    p.add_argument("--out", default=None)
    p.add_argument("--meta", default=None)
    args = p.parse_args()
    cfg = cli.config_from(args)
    raw = args.raw or paths.raw(args.dataset, source_size_for(cfg, args.res))
    meta = preprocess(cfg, args.dataset, args.res, raw, args.out, args.meta)
    how = f"upsampled from {meta['source_size']}" if meta["upsampled"] else f"from the official {meta['source_size']}x{meta['source_size']} file"
    print(f"{args.dataset} {args.res}x{args.res} ({how}): splits {meta['split_sizes']}")


if __name__ == "__main__":
    cli.run(main)
