"""Pack a study's small GPU results into a tarball (on the GPU box), or unpack them here.

  on the GPU box:  python workflow/scripts/results_bundle.py pack results.tgz --config config/reference.yaml
  here:            python workflow/scripts/results_bundle.py unpack results.tgz --config config/reference.yaml
  list targets:    python workflow/scripts/results_bundle.py targets --config config/reference.yaml [--datasets organamnist]
"""
from ssmvit import bundle, cli


def main():
    p = cli.parser(__doc__)
    p.add_argument("action", choices=["pack", "unpack", "targets"])
    p.add_argument("tarball", nargs="?")
    p.add_argument("--datasets", nargs="*", default=None, help="only these datasets (pack, targets)")
    args = p.parse_args()
    cfg = cli.config_from(args)
    if args.action == "targets":
        root = "" if cfg["outdir"] in (".", "") else cfg["outdir"].rstrip("/") + "/"
        print(" ".join(root + f for f in bundle.result_files(cfg, args.datasets)))
        return
    if not args.tarball:
        raise SystemExit("error: pack and unpack need a tarball path")
    if args.action == "pack":
        files = bundle.pack(cfg, args.tarball, args.datasets)
    else:
        files = bundle.unpack(cfg, args.tarball)
    print(f"{args.action}ed {len(files)} files ({args.tarball})")


if __name__ == "__main__":
    cli.run(main)
