"""Stage: test-split metrics (ACC, AUC as medmnist computes them, macro-F1, confusion matrix)."""
from ssmvit.gpus import claim_gpu
from ssmvit import cli
from ssmvit.evaluate import evaluate_run


def main():
    claim_gpu()  # one GPU per job on a multi-GPU host (before CUDA starts)
    p = cli.parser(__doc__)
    cli.add_run_args(p)
    p.add_argument("--data", default=None)
    p.add_argument("--out-dir", default=None)
    args = p.parse_args()
    cfg = cli.config_from(args)
    seed = args.seed if args.seed is not None else cfg["study"]["seeds"][0]
    m = evaluate_run(cfg, args.dataset, args.res, args.model, seed, args.data, None, None, args.out_dir)
    print(f"{args.model} on {args.dataset} {args.res}x{args.res}: test ACC {m['acc']:.4f} AUC {m['auc']:.4f} "
          f"macro-F1 {m['macro_f1']:.4f} (n={m['n_test']})")


if __name__ == "__main__":
    cli.run(main)
