"""Stage: train one model on one dataset/resolution/seed (resumes from last.pt)."""
from ssmvit.gpus import claim_gpu
from ssmvit import cli
from ssmvit.training import train_one_run


def main():
    claim_gpu()  # one GPU per job on a multi-GPU host (before CUDA starts)
    p = cli.parser(__doc__)
    cli.add_run_args(p)
    p.add_argument("--data", default=None, help="preprocessed npz (default: data/processed/{dataset}_{res}.npz)")
    p.add_argument("--out-dir", default=None, help="default: results/runs/{dataset}_{res}_{model}_s{seed}")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    cfg = cli.config_from(args)
    seed = args.seed if args.seed is not None else cfg["study"]["seeds"][0]
    s = train_one_run(cfg, args.dataset, args.res, args.model, seed, args.data, None, args.out_dir,
                      progress=not args.no_progress)
    print(f"{args.model} on {args.dataset} {args.res}x{args.res}: {s['params']:,} parameters, best val acc "
          f"{s['best_val_acc']:.4f} (epoch {s['best_epoch']}), {s['train_seconds_this_call']:.1f}s on {s['device']}")


if __name__ == "__main__":
    cli.run(main)
