"""``ssmvit``: one command per stage, for people, for Snakemake's rules and for DVC's stages.

  ssmvit download   --dataset organamnist --res 64
  ssmvit preprocess --dataset organamnist --res 64
  ssmvit train      --model s4d --dataset organamnist --res 64 [--seed 0]
  ssmvit evaluate   --model s4d --dataset organamnist --res 64 [--seed 0]
  ssmvit compile    --model s4d --res 64          # the profile's compiles, ahead of it on a shared GPU
  ssmvit profile    --model s4d --dataset organamnist --res 64
  ssmvit aggregate | plot | paper
  ssmvit bundle pack|unpack results.tgz

A person's command reads ``--config FILE`` (default ``config.yaml``; repeat it
to stack files as Snakemake stacks ``--configfile``) and ``--set KEY=VALUE``
overrides; a Snakemake job receives its part of the resolved config as
``--settings JSON`` instead. Files default to the pipeline's own paths inside
the study's ``outdir`` (``ssmvit.paths``), and ``train``/``evaluate`` make the
download and preprocessing they need when those files are missing. Bad input
stops with one line (``error: ...``, exit status 2) before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import paths
from .errors import UserError

STAGES = ("download", "preprocess", "train", "evaluate", "compile", "profile", "aggregate", "plot", "paper", "bundle")


# ---------------------------------------------------------------- arguments

def _config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration")
    g.add_argument("--config", action="append", metavar="FILE",
                   help="study config file; repeat to stack files, later ones win (default: config.yaml)")
    g.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="replace one value, e.g. --set train.epochs=1 or --set 'data.upsample_from={64: 28}'")
    g.add_argument("--settings", metavar="JSON",
                   help="the resolved config values this job depends on, as the Snakefile passes them "
                        "(instead of --config/--set)")


def _run_args(p: argparse.ArgumentParser, model: bool = True, seed: bool = True) -> None:
    p.add_argument("--dataset", required=True, help="a MedMNIST 2D dataset, e.g. organamnist")
    p.add_argument("--res", required=True, type=int, help="image resolution: 28, 64, 128 or 224")
    if model:
        p.add_argument("--model", required=True, help="a model of src/ssmvit/models/, e.g. vit, s4d or resnet18")
    if seed:
        p.add_argument("--seed", type=int, default=None, help="training seed (default: the first of study.seeds)")


def build_parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ssmvit", description="S4D vs ViT on MedMNIST: one command per pipeline stage.")
    sub = top.add_subparsers(dest="stage", required=True, metavar="STAGE")

    p = sub.add_parser("download", help="get the official file a resolution is made from (local root first)")
    _run_args(p, model=False, seed=False)
    p.add_argument("--out", help=f"default: <outdir>/{paths.RAW}")

    p = sub.add_parser("preprocess", help="official npz -> uint8 NCHW splits at one resolution, plus metadata")
    _run_args(p, model=False, seed=False)
    p.add_argument("--raw", help=f"default: <outdir>/{paths.RAW} (downloaded if missing)")
    p.add_argument("--out", help=f"default: <outdir>/{paths.PROCESSED}")
    p.add_argument("--meta", help=f"default: <outdir>/{paths.PROCESSED_META}")

    for name, what in (("train", "train one model on one dataset/resolution/seed (resumes from last.pt)"),
                       ("evaluate", "test-split metrics of the best checkpoint")):
        p = sub.add_parser(name, help=what)
        _run_args(p)
        p.add_argument("--data", help=f"preprocessed npz (default: <outdir>/{paths.PROCESSED}, made if missing)")
        p.add_argument("--meta", help="its metadata JSON (default: beside --data)")
        p.add_argument("--out-dir", help=f"default: <outdir>/{paths.RUN_DIR}")
        if name == "train":
            p.add_argument("--no-progress", action="store_true", help="no progress bar (logs get one line per epoch)")
        else:
            p.add_argument("--checkpoint", help="default: best.pt in --out-dir")

    for name, what in (("compile", "compile the graphs a profile's as-trained regime runs into the study's inductor "
                                    "cache, ahead of the profile (nothing where compile does not apply)"),
                       ("profile", "params, MACs (three counts), peak memory and throughput of one model at one "
                                   "resolution, each input shape measured once")):
        p = sub.add_parser(name, help=what)
        p.add_argument("--res", required=True, type=int, help="image resolution: 28, 64, 128 or 224")
        p.add_argument("--model", required=True, help="a model of src/ssmvit/models/, e.g. vit, s4d or resnet18")
        p.add_argument("--dataset", nargs="+", help="datasets to write a profile for (default: the study's datasets "
                                                    "and profile_only); one measurement (or compile) per number of "
                                                    "channels")
        p.add_argument("--device", help="auto, cpu or cuda (default: profile.device)")
        if name == "compile":
            p.add_argument("--out", help=f"what compiled, as JSON (default: <outdir>/{paths.COMPILED})")
            continue
        p.add_argument("--out-dir", help=f"one <dataset>.json per dataset (default: <outdir>/{paths.PROFILE_DIR})")
        p.add_argument("--batch-sizes", help="inference batch sizes, e.g. 1,64,256 (default: profile.batch_sizes)")
        p.add_argument("--repeats", type=int, help="timed repeats per measurement (default: profile.repeats)")
        p.add_argument("--warmup", type=int, help="untimed calls before timing (default: profile.warmup)")

    p = sub.add_parser("aggregate", help="per-run and per-profile files -> results/aggregate/*.csv, provenance.json")
    for flag in ("metrics", "summaries", "histories", "logits", "profiles"):
        p.add_argument(f"--{flag}", nargs="*", help="default: every such file of the study")
    p.add_argument("--seed-study", default=paths.SEED_STUDY,
                   help=f"the seed study's benchmark table (default: {paths.SEED_STUDY})")
    p.add_argument("--out-dir", help="default: <outdir>/results/aggregate")

    p = sub.add_parser("plot", help="the paper's figures from the aggregate tables")
    p.add_argument("--aggregate-dir", help="default: <outdir>/results/aggregate")
    p.add_argument("--metrics", nargs="*", help="the runs' metrics.json (confusion matrices); default: the study's")
    p.add_argument("--out-dir", help=f"default: <outdir>/{paths.FIGURES_DIR}")

    p = sub.add_parser("paper", help="generated LaTeX (numbers, tables, text) and the PDF")
    p.add_argument("--aggregate-dir", help="default: <outdir>/results/aggregate")
    p.add_argument("--figures-dir", help=f"default: <outdir>/{paths.FIGURES_DIR}")
    p.add_argument("--tex", default="paper/main.tex")
    p.add_argument("--bib", default="paper/references.bib")
    p.add_argument("--out", help=f"the PDF (default: <outdir>/{paths.PAPER_PDF}); generated/ is written beside it")

    p = sub.add_parser("bundle", help="pack a study's small GPU results (on a GPU box) or unpack them here")
    p.add_argument("action", choices=["pack", "unpack"])
    p.add_argument("tarball")

    for p in sub.choices.values():
        _config_args(p)
    return top


def config_of(args) -> dict:
    from .config import DEFAULT_CONFIG_FILE, from_settings, load

    if args.settings is not None:
        if args.config or args.sets:
            raise UserError("--settings replaces --config and --set; give one or the other")
        return from_settings(args.settings)
    files = args.config if args.config else ([DEFAULT_CONFIG_FILE] if Path(DEFAULT_CONFIG_FILE).exists() else [])
    return load(files, args.sets)


# ---------------------------------------------------------------- stages

def _check_run(cfg: dict, args, model: bool = True) -> None:
    """Names are checked before any path is built from them."""
    from .catalog import SIZES, check_choice, check_dataset
    from .config import known_models

    check_dataset(args.dataset)
    check_choice("resolution", args.res, SIZES)
    if model:
        check_choice("model", args.model, known_models())
    if getattr(args, "seed", None) is None and hasattr(args, "seed"):
        args.seed = cfg["study"]["seeds"][0]
    if getattr(args, "seed", None) is not None and args.seed < 0:
        raise UserError(f"--seed {args.seed} is negative; seeds are integers >= 0")


def _file(cfg, pattern, args, **extra) -> Path:
    wildcards = {"dataset": args.dataset, "res": args.res, **extra}
    for key in ("model", "seed"):
        if getattr(args, key, None) is not None:
            wildcards[key] = getattr(args, key)
    return paths.file(cfg["outdir"], pattern, **wildcards)


def do_download(cfg, args) -> None:
    from .datasets import fetch_raw

    _check_run(cfg, args, model=False)
    info = fetch_raw(cfg, args.dataset, args.res, args.out or _file(cfg, paths.RAW, args))
    print(f"{info['path']}: {info['file']} ({info['size']}x{info['size']}), md5 {info['md5']} ok, from {info['origin']}")


def do_preprocess(cfg, args) -> None:
    from .datasets import preprocess

    _check_run(cfg, args, model=False)
    raw = Path(args.raw) if args.raw else _file(cfg, paths.RAW, args)
    if args.raw is None and not raw.exists():
        print(f"{raw} is missing: downloading it first", flush=True)
        do_download(cfg, argparse.Namespace(dataset=args.dataset, res=args.res, out=str(raw)))
    meta = preprocess(cfg, args.dataset, args.res, raw, args.out or _file(cfg, paths.PROCESSED, args),
                      args.meta or _file(cfg, paths.PROCESSED_META, args))
    how = (f"upsampled from {meta['source_size']}x{meta['source_size']}" if meta["upsampled"]
           else f"from the official {meta['source_size']}x{meta['source_size']} file")
    print(f"{args.dataset} {args.res}x{args.res} ({how}): splits {meta['split_sizes']}")


def _data_for(cfg, args) -> tuple[Path, Path]:
    """The preprocessed files of a run; at the default paths they are made when missing."""
    if args.data:
        data = Path(args.data)
        return data, Path(args.meta) if args.meta else data.with_suffix(".json")
    data, meta = _file(cfg, paths.PROCESSED, args), _file(cfg, paths.PROCESSED_META, args)
    if not (data.exists() and meta.exists()):
        print(f"{data} is missing: preparing it (ssmvit preprocess --dataset {args.dataset} --res {args.res})", flush=True)
        do_preprocess(cfg, argparse.Namespace(dataset=args.dataset, res=args.res, raw=None, out=str(data),
                                              meta=str(meta)))
    return data, meta


def do_train(cfg, args) -> None:
    from .training import train_one_run

    _check_run(cfg, args)
    data, meta = _data_for(cfg, args)
    s = train_one_run(cfg, args.dataset, args.res, args.model, args.seed, data, meta,
                      args.out_dir or _file(cfg, paths.RUN_DIR, args), progress=not args.no_progress)
    print(f"{args.model} on {args.dataset} {args.res}x{args.res}: {s['params']:,} parameters, best val acc "
          f"{s['best_val_acc']:.4f} (epoch {s['best_epoch']}), {s['train_seconds_this_call']:.1f}s on {s['device']}")


def do_evaluate(cfg, args) -> None:
    from .evaluate import evaluate_run

    _check_run(cfg, args)
    out_dir = Path(args.out_dir) if args.out_dir else _file(cfg, paths.RUN_DIR, args)
    checkpoint = Path(args.checkpoint) if args.checkpoint else out_dir / "best.pt"
    if not checkpoint.exists():  # before any data is prepared for it
        raise UserError(f"checkpoint {checkpoint} does not exist; run the training stage first "
                        f"(ssmvit train --model {args.model} --dataset {args.dataset} --res {args.res} --seed {args.seed})")
    data, meta = _data_for(cfg, args)
    m = evaluate_run(cfg, args.dataset, args.res, args.model, args.seed, data, meta, checkpoint, out_dir)
    print(f"{args.model} on {args.dataset} {args.res}x{args.res}: test ACC {m['acc']:.4f} AUC {m['auc']:.4f} "
          f"macro-F1 {m['macro_f1']:.4f} (n={m['n_test']})")


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise UserError(f"--batch-sizes {text!r} is not a comma-separated list of positive integers; write e.g. 1,64,256")
    return sizes


def do_compile(cfg, args) -> None:
    from .fileio import write_json
    from .profiling import compile_as_trained

    datasets = _profile_job_datasets(cfg, args)
    out = Path(args.out) if args.out else paths.file(cfg["outdir"], paths.COMPILED, res=args.res, model=args.model)
    record = compile_as_trained(cfg, datasets, args.res, args.model, device=args.device)
    write_json(out, record)
    print(record["note"] or f"compiled {args.model} at {args.res}x{args.res} for {len(record['shapes'])} input "
                            f"shape(s) in {record['seconds']:.1f} s into {record['inductor_cache']}")
    print(f"wrote {out}")


def _profile_job_datasets(cfg, args) -> list[str]:
    """The datasets of a compile or profile job, after its names and device are checked."""
    from .catalog import SIZES, check_choice, check_dataset
    from .config import known_models

    datasets = args.dataset or paths.profiled_datasets(cfg)
    for d in datasets:
        check_dataset(d)
    check_choice("resolution", args.res, SIZES)
    check_choice("model", args.model, known_models())
    if args.device is not None and args.device != "auto" and args.device.split(":")[0] not in ("cpu", "cuda"):
        raise UserError(f"--device {args.device!r} is not one of auto, cpu, cuda")
    return datasets


def do_profile(cfg, args) -> None:
    from .fileio import write_json
    from .profiling import profile_datasets, profile_to_row

    datasets = _profile_job_datasets(cfg, args)
    if args.repeats is not None and args.repeats < 1:
        raise UserError("--repeats must be at least 1")
    if args.warmup is not None and args.warmup < 0:
        raise UserError("--warmup must be at least 0")
    out = Path(args.out_dir) if args.out_dir else paths.file(cfg["outdir"], paths.PROFILE_DIR, res=args.res,
                                                             model=args.model)
    profiles = profile_datasets(cfg, datasets, args.res, args.model, device=args.device,
                                batch_sizes=_batch_sizes(args.batch_sizes) if args.batch_sizes else None,
                                repeats=args.repeats, warmup=args.warmup)
    for dataset, prof in profiles.items():  # written after every measurement, each file atomically
        write_json(out / f"{dataset}.json", prof)
    for dataset, prof in profiles.items():
        row = profile_to_row(prof)
        train = row["train_samples_per_s_fp32"]
        train = f"{train:.1f}" if isinstance(train, float) else train
        print(f"{args.model} on {dataset} {args.res}x{args.res} ({row['device_type']}: {row['device_name']}): "
              f"{row['params']:,} params; MACs thop {row['macs_thop']:,}, FlopCounterMode {row['macs_flopcounter']:,}, "
              f"analytic {row['macs_analytic']:,}; train {train} samples/s (fp32, timed with "
              f"{prof['timed_with']['dataset']})")
    print(f"wrote {len(profiles)} profile(s) to {out}")


def _aggregate_dir(cfg, given) -> Path:
    return Path(given) if given else paths.file(cfg["outdir"], paths.AGGREGATE, table="")


def do_aggregate(cfg, args) -> None:
    from . import aggregate
    from .fileio import write_csv, write_json
    from .seed_claims import read_seed_table, seed_claims

    git = aggregate.git_state(cfg["outdir"])  # before this stage writes anything
    seed_table = read_seed_table(args.seed_study)  # a broken input fails before any table is written
    files = {flag: getattr(args, flag) if getattr(args, flag) is not None else paths.study_files(cfg, pattern)
             for flag, pattern in (("metrics", paths.METRICS), ("summaries", paths.TRAIN_SUMMARY),
                                   ("histories", paths.HISTORY), ("logits", paths.TEST_LOGITS),
                                   ("profiles", paths.PROFILE))}
    out = _aggregate_dir(cfg, args.out_dir)
    runs = aggregate.collect_runs(files["metrics"], files["summaries"])
    st = cfg["study"]
    write_csv(out / "runs.csv", runs)
    accuracy = aggregate.accuracy_table(runs, st["profile_only"], st["resolutions"], st["models"])
    write_csv(out / "accuracy.csv", accuracy)
    write_json(out / "summary.json", aggregate.summary_metrics(accuracy))
    write_csv(out / "histories.csv", aggregate.collect_histories(files["histories"]))
    write_csv(out / "paired.csv", aggregate.paired_comparison(files["logits"]))
    write_csv(out / "seed_comparison.csv", aggregate.seed_comparison(runs, st["models"]))
    efficiency = aggregate.efficiency_table(files["profiles"])
    write_csv(out / "efficiency.csv", efficiency)
    write_csv(out / "seed_claims.csv", seed_claims(seed_table, efficiency))
    write_json(out / "provenance.json", aggregate.provenance(cfg, files["summaries"], files["profiles"], git))
    print(f"aggregated {len(runs)} runs and {len(files['profiles'])} profiles into {out}")


def do_plot(cfg, args) -> None:
    from .plots import MANIFEST, make_all

    out = Path(args.out_dir) if args.out_dir else paths.file(cfg["outdir"], paths.FIGURES_DIR)
    metrics = args.metrics if args.metrics is not None else paths.study_files(cfg, paths.METRICS)
    written = make_all(_aggregate_dir(cfg, args.aggregate_dir), metrics, out)
    for path in written:
        print(path)
    print(f"{len(written)} figure(s) written; list in {out / MANIFEST}")


def do_paper(cfg, args) -> None:
    from .latex import build_pdf, pdf_pages
    from .report import write_all

    pdf = Path(args.out) if args.out else paths.file(cfg["outdir"], paths.PAPER_PDF)
    figures = Path(args.figures_dir) if args.figures_dir else paths.file(cfg["outdir"], paths.FIGURES_DIR)
    written = write_all(cfg, _aggregate_dir(cfg, args.aggregate_dir), figures, pdf.parent / "generated",
                        sections_dir=Path(args.tex).parent / "sections")
    print(f"{len(written)} generated LaTeX files in {pdf.parent / 'generated'}")
    build_pdf(args.tex, args.bib, pdf)
    print(f"{pdf}: {pdf_pages(pdf)} pages")


def do_bundle(cfg, args) -> None:
    from . import bundle

    files = (bundle.pack if args.action == "pack" else bundle.unpack)(cfg, args.tarball)
    print(f"{args.action}ed {len(files)} files ({args.tarball})")


# ---------------------------------------------------------------- entry point

def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if args.stage in ("train", "evaluate", "compile", "profile"):
        from .gpus import claim_gpu

        claim_gpu()  # one GPU per job on a multi-GPU host, before CUDA starts
    try:
        cfg = config_of(args)
        globals()[f"do_{args.stage}"](cfg, args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)


def print_accuracy_summary(accuracy_csv) -> None:
    """Test ACC/AUC (mean over seeds) per dataset/resolution/model, if the table exists (Snakemake's onsuccess)."""
    import pandas as pd

    if not Path(accuracy_csv).exists():
        return
    acc = pd.read_csv(accuracy_csv)
    print(f"test metrics ({accuracy_csv}):")
    for row in acc.itertuples():
        if row.status == "ok":
            print(f"  {row.dataset:12s} {row.resolution:>3d} {row.model:4s} ACC {row.acc_mean:.4f} "
                  f"AUC {row.auc_mean:.4f}  ({row.n_seeds} seed{'s' if row.n_seeds > 1 else ''})")
        else:
            print(f"  {row.dataset:12s} {row.resolution:>3d} {row.model:4s} {row.status}")


