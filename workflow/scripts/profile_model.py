"""Stage: params, MACs (thop, FlopCounterMode, analytic), speed and peak memory of one configuration."""
from ssmvit.gpus import claim_gpu
from ssmvit import cli, paths
from ssmvit.errors import UserError
from ssmvit.fileio import write_json
from ssmvit.profiling import profile_model, profile_to_row


def batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise UserError(f"--batch-sizes {text!r} is not a comma-separated list of positive integers; "
                        "write e.g. 1,64,256")
    return sizes


def main():
    claim_gpu()  # one GPU per job on a multi-GPU host (before CUDA starts)
    p = cli.parser(__doc__)
    cli.add_run_args(p, seed=False)
    p.add_argument("--out", default=None, help="default: results/profile/{dataset}_{res}_{model}.json")
    p.add_argument("--batch-sizes", default=None,
                   help="inference batch sizes, e.g. 1,64,256,1024 (default: profile.batch_sizes)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default: profile.repeats)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls before timing (default: profile.warmup)")
    p.add_argument("--device", default=None, help="auto, cpu or cuda (default: profile.device)")
    args = p.parse_args()
    cfg = cli.config_from(args)
    if args.repeats is not None and args.repeats < 1:
        raise UserError("--repeats must be at least 1")
    if args.warmup is not None and args.warmup < 0:
        raise UserError("--warmup must be at least 0")
    if args.device is not None and args.device != "auto" and args.device.split(":")[0] not in ("cpu", "cuda"):
        raise UserError(f"--device {args.device!r} is not one of auto, cpu, cuda")
    out = args.out or paths.profile(args.dataset, args.res, args.model, cfg.get("outdir", "."))
    prof = profile_model(cfg, args.dataset, args.res, args.model, device=args.device,
                         batch_sizes=batch_sizes(args.batch_sizes) if args.batch_sizes else None,
                         repeats=args.repeats, warmup=args.warmup)
    write_json(out, prof)
    row = profile_to_row(prof)
    train = row["train_samples_per_s_fp32"]
    train = f"{train:.1f}" if isinstance(train, float) else train
    print(f"{args.model} on {args.dataset} {args.res}x{args.res} ({row['device_type']}: {row['device_name']}): "
          f"{row['params']:,} params; MACs thop {row['macs_thop']:,}, FlopCounterMode {row['macs_flopcounter']:,}, "
          f"analytic {row['macs_analytic']:,}; train {train} samples/s (fp32); wrote {out}")


if __name__ == "__main__":
    cli.run(main)
