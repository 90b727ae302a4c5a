#!/usr/bin/env python3
"""Training and inference throughput of the project's fast path against a plain fp32 baseline, one GPU.

    python3 bench/bench_train.py --out bench/results/h100.csv          # on the GPU machine
    python3 bench/bench_train.py --device cpu --quick --out /tmp/q.csv # tiny end-to-end check on CPU

For each model x resolution x colour (S4D and ViT; 28 and 64; grayscale =
OrganAMNIST shapes, 1 channel 11 classes, S4D d_model 128; RGB =
DermaMNIST shapes, 3 channels 7 classes, S4D d_model 256) it builds the
project's model with a fixed seed, loads the same weights into the baseline
(``bench/baseline_models.py``: eager fp32, complex S4D kernel, FFT of 2L,
plain AdamW, no autocast, no compile, input already a float tensor on the
device) and into the fast model (``ssmvit.models`` + ``ssmvit.fastpath.make_train_step``,
the step ``training.train_one_run`` runs, input as uint8 normalised inside the
step like ``training.DeviceData``), then times training steps at each
``--train-batches`` size and inference at ``--infer-batch``. See bench/README.md
for the columns. Exit status 1 when a numerics check fails (the CSV is still written).
"""

from __future__ import annotations

import argparse
import copy
import csv
import gc
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline_models import build_baseline  # noqa: E402
from ssmvit.config import load, model_settings, resolve  # noqa: E402
from ssmvit.fastpath import compile_model, inference_forward, make_train_step, resolve_fast_path  # noqa: E402
from ssmvit.macs import count_macs_analytic, macs_at_batch  # noqa: E402
from ssmvit.models import INPUT_LAYOUT, build_model, count_params  # noqa: E402
from ssmvit.profiling import is_oom, time_calls  # noqa: E402
from ssmvit.training import DeviceData, build_optimizer  # noqa: E402

COLOURS = {"gray": {"n_channels": 1, "n_classes": 11, "shapes_of": "organamnist"},
           "rgb": {"n_channels": 3, "n_classes": 7, "shapes_of": "dermamnist"}}
QUICK_MODELS = {
    "vit": {"lr": 1e-3, "patch_size": 4, "embed_dim": 32, "depth": 1, "num_heads": 4, "mlp_dim": 64, "dropout": 0.1},
    "s4d": {"lr": 1e-2, "ssm_lr": 1e-3, "d_model_grayscale": 8, "d_model_rgb": 12, "n_layers": 1, "d_state": 8,
            "dropout": 0.1},
}
COLUMNS = ["gpu", "driver", "cuda", "torch", "device", "model", "res", "colour", "n_channels", "n_classes", "width",
           "params", "phase", "batch", "fwd_macs_per_batch", "baseline_ms", "fast_ms", "baseline_samples_s",
           "fast_samples_s", "speedup", "baseline_tflops", "fast_tflops", "fast_frac_peak", "peak_tflops",
           "baseline_peak_mib", "fast_peak_mib", "fast_warmup_s", "fast_path", "sdpa_fused", "logits_rel_l2", "logits_max_rel",
           "argmax_agree", "tol_rel_l2", "numerics_ok", "repeats", "warmup", "status"]


# The targets (one H200, against the plain fp32 baseline of the same run): training at batch 64 on
# grayscale inputs at least 3x (S4D-64: 4x); inference at batch 1024 at least 3x, every configuration.
SUMMARY_COLUMNS = ["model", "res", "colour", "phase", "batch", "baseline_samples_s", "fast_samples_s", "speedup",
                   "target", "meets_target", "fast_path", "numerics_ok", "status", "gpu", "driver", "cuda", "torch",
                   "source"]


def speedup_target(model: str, res: int, colour: str, phase: str, batch: int) -> float | None:
    if phase == "train" and batch == 64 and colour == "gray":
        return 4.0 if (model, res) == ("s4d", 64) else 3.0
    if phase == "infer" and batch == 1024:
        return 3.0
    return None


def summary_rows(rows: list[dict], source: str) -> list[dict]:
    """One row per (model, res, colour, phase, batch) of a benchmark run, with its target where it has one."""
    out = []
    for r in rows:
        target = speedup_target(str(r["model"]), int(r["res"]), str(r["colour"]), str(r["phase"]), int(r["batch"]))
        speed = float(r["speedup"]) if r.get("speedup") not in (None, "") else None
        out.append({k: r.get(k) for k in SUMMARY_COLUMNS if k in r} | {
            "target": target, "source": source,
            "meets_target": None if target is None or speed is None else speed >= target})
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench/results/bench.csv", help="CSV to write")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    p.add_argument("--models", nargs="+", default=["s4d", "vit"], choices=["s4d", "vit"])
    p.add_argument("--res", nargs="+", type=int, default=[28, 64])
    p.add_argument("--colours", "--colors", nargs="+", default=["gray", "rgb"], choices=list(COLOURS))
    p.add_argument("--train-batches", nargs="+", type=int, default=[64, 512])
    p.add_argument("--infer-batch", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported), >= 5 for real numbers")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before timing (compile happens here)")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H100 SXM: 989)")
    p.add_argument("--tol", type=float, default=2e-2, help="max relative L2 error of fast logits vs fp32 baseline")
    p.add_argument("--config", default=None, help="study config YAML for model settings (default: package defaults)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="fast path with train.fast_path.compile (the default)")
    p.add_argument("--no-compile", action="store_true", help="fast path without torch.compile (eager)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="fast path with cuda_graphs (the default already): the whole training step in one CUDA graph")
    p.add_argument("--compile-scope", choices=["blocks", "model"], default=None,
                   help="train.fast_path.compile_scope (default: the config's)")
    p.add_argument("--no-bf16", action="store_true", help="fast path without bf16 autocast")
    p.add_argument("--no-fused", action="store_true", help="fast path without the fused AdamW")
    p.add_argument("--no-bf16-residual", action="store_true",
                   help="fast path without bf16_residual (S4D's residual stream in fp32)")
    p.add_argument("--no-chunked", action="store_true",
                   help="fast path without s4d_chunked_conv (S4D convolves by FFT, as the baseline)")
    p.add_argument("--skip-baseline", action="store_true", help="time the fast path only")
    p.add_argument("--kernel-profile", default=None, metavar="CSV",
                   help="also profile the fast training step at the first --train-batches size with "
                        "torch.profiler: GPU kernel time per step by kind (FFT, GEMM, attention, "
                        "elementwise, ...) against the step's wall time, written to CSV")
    p.add_argument("--summary", default="bench/results/summary.csv",
                   help="where a full CUDA run also writes its summary (speedup against the targets); not with --quick")
    p.add_argument("--summarize", metavar="CSV", default=None,
                   help="write --summary from an earlier run's CSV and exit (no benchmark runs)")
    p.add_argument("--quick", action="store_true",
                   help="tiny models and batches (CPU smoke test): res 28, batches 4/8, inference 16, 2 repeats")
    args = p.parse_args(argv)
    if args.quick:
        args.res, args.train_batches, args.infer_batch = [28], [4, 8], 16
        args.repeats, args.warmup = min(args.repeats, 2), min(args.warmup, 1)
    return args


# ------------------------------------------------------------------------------------- helpers
def environment(device: torch.device) -> dict:
    env = {"gpu": "", "driver": "", "cuda": torch.version.cuda or "", "torch": torch.__version__,
           "device": str(device)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30)
            env["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
        except (OSError, subprocess.SubprocessError):
            pass
    else:
        env["gpu"] = f"cpu: {platform.processor() or platform.machine()}"
    return env


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def time_fn(fn, device, repeats: int, warmup: int) -> tuple[float, float | None, float]:
    """(median seconds of one call over ``repeats``, peak MiB allocated during the timed calls or None on CPU,
    seconds of the warm-up calls: with torch.compile, mostly compile time)."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    sync(device)
    warm_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = time_calls(fn, device, repeats)  # the same timing as the pipeline's profile stage
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return statistics.median(times), peak, warm_s


def random_uint8_data(n: int, n_channels: int, n_classes: int, res: int, layout: str, device, seed: int) -> DeviceData:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, n_channels, res, res), generator=g, dtype=torch.uint8).numpy()
    labels = torch.randint(0, n_classes, (n,), generator=g).numpy()
    return DeviceData(images, labels, [0.5] * n_channels, [0.25] * n_channels, layout, device)


def sdpa_fused_ok(model, x, fast_path, device) -> str:
    """Whether the ViT forward + backward runs with SDPA restricted to the flash / memory-efficient kernels."""
    if device.type != "cuda":
        return "n/a"
    from torch.nn.attention import SDPBackend, sdpa_kernel

    try:
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
            with fast_path.autocast():
                out = model(x[:8])
            out.float().sum().backward()
        model.zero_grad(set_to_none=True)
        return "yes"
    except RuntimeError as exc:
        model.zero_grad(set_to_none=True)
        return f"no: {str(exc).splitlines()[0][:80]}"


# --------------------------------------------------------------------------------- one config
def bench_config(args, cfg, env, device, model_name: str, res: int, colour: str, requested_fp: dict) -> list[dict]:
    info = COLOURS[colour]
    n_ch, n_cls = info["n_channels"], info["n_classes"]
    settings = model_settings(cfg, model_name, n_ch)
    layout = INPUT_LAYOUT[model_name]
    mcfg = cfg["models"][model_name]
    lr, ssm_lr, wd = float(mcfg["lr"]), mcfg.get("ssm_lr"), float(cfg["train"]["weight_decay"])
    macs = count_macs_analytic(model_name, n_ch, n_cls, res, settings)
    # Each configuration compiles afresh, as in a training job (one run per process): without this, the
    # compiled blocks of earlier configurations count towards dynamo's recompile limit and later ones run eager.
    torch._dynamo.reset()
    # Static shapes (fastpath.compile_model): a graph for the logits check, each training batch and the inference
    # batch, each twice where a block sees two input dtypes (S4D without bf16_residual).
    graphs = 2 * (2 + len(args.train_batches))
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, graphs)
    torch.manual_seed(args.seed)
    reference = build_model(model_name, n_ch, n_cls, res, **settings)
    state = copy.deepcopy(reference.state_dict())
    params = count_params(reference)
    del reference
    n_data = max(args.train_batches + [args.infer_batch])
    data = random_uint8_data(n_data, n_ch, n_cls, res, layout, device, args.seed + 1)
    n_check = min(256, args.infer_batch, n_data)
    x_check, _ = data.batch(torch.arange(n_check, device=device))
    phases = [("train", b) for b in args.train_batches] + [("infer", args.infer_batch)]
    results = {("baseline", p): None for p in phases} | {("fast", p): None for p in phases}
    status = {p: [] for p in phases}
    logits = {}

    def run_impl(impl: str):
        torch.manual_seed(args.seed + 2)
        if impl == "baseline":
            model = build_baseline(model_name, n_ch, n_cls, res, **settings)
            model.load_state_dict(state, strict=True)
            model.to(device)
            optimizer = build_optimizer(model, lr, wd, ssm_lr)  # plain AdamW (foreach where torch picks it)

            def train_step(x, y, model=model, optimizer=optimizer):
                out = model(x)
                loss = F.cross_entropy(out, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            def infer(x, model=model):
                with torch.inference_mode():
                    return model(x)

            fp_label = "none (eager fp32)"
            fused = "n/a"
        else:
            model = build_model(model_name, n_ch, n_cls, res, **settings)
            model.load_state_dict(state, strict=True)
            model.to(device)
            fp = resolve_fast_path(requested_fp, device)
            optimizer = build_optimizer(model, lr, wd, ssm_lr, fused=fp.fused_optimizer)
            step = make_train_step(model, optimizer, fp, device)
            fp = step.fast_path
            infer = inference_forward(compile_model(model, fp), fp)

            def train_step(x, y):
                step(x, y)

            fp_label = "+".join(k if v is True else f"{k}={v}" for k, v in fp.as_dict().items() if v) \
                or "none (inactive on this device)"
            fused = sdpa_fused_ok(model, x_check, fp, device) if model_name == "vit" else "n/a"
        model.eval()
        try:
            logits[impl] = infer(x_check).float().clone()
        except Exception as exc:  # noqa: BLE001  a compiler failure of the fast path is recorded, not fatal
            if impl == "baseline" or not (requested_fp.get("compile") or requested_fp.get("cuda_graphs")):
                raise
            print(f"# {model_name} {res} {colour}: compiled inference failed: {exc!r}"[:400], flush=True)
        for phase in phases:
            kind, batch = phase
            idx = torch.arange(batch, device=device)
            try:
                if kind == "train":
                    model.train()
                    if impl == "baseline":
                        xb, yb = (t.clone() for t in data.batch(idx))  # float input already on the device
                        fn = lambda: train_step(xb, yb)  # noqa: E731
                    else:
                        fn = lambda: train_step(*data.batch(idx))  # noqa: E731  uint8 -> normalised in the step
                else:
                    model.eval()
                    if impl == "baseline":
                        xb, _ = data.batch(idx)
                        fn = lambda: infer(xb)  # noqa: E731
                    else:
                        fn = lambda: infer(data.batch(idx)[0])  # noqa: E731
                results[(impl, phase)] = time_fn(fn, device, args.repeats, args.warmup)
                if (args.kernel_profile and impl == "fast" and kind == "train" and batch == args.train_batches[0]
                        and device.type == "cuda"):
                    kernel_breakdown(fn, device, 5, results[(impl, phase)][0] * 1e3,
                                     {"model": model_name, "res": res, "colour": colour, "batch": batch,
                                      "fast_path": fp_label})
            except Exception as exc:  # noqa: BLE001  an OOM or a compiler failure is a result, not a crash
                if is_oom(exc):
                    status[phase].append(f"{impl} OOM")
                elif impl == "fast" and (requested_fp.get("compile") or requested_fp.get("cuda_graphs")):
                    first = str(exc).strip().splitlines()[0][:80] if str(exc).strip() else ""
                    status[phase].append(f"{impl} failed: {type(exc).__name__}: {first}")
                    print(f"# {model_name} {res} {colour} {phase}: fast path failed: {exc!r}"[:400], flush=True)
                else:
                    raise
            finally:
                optimizer.zero_grad(set_to_none=True)
                fn = xb = yb = None
                free(device)
        del model, optimizer
        free(device)
        return fp_label, fused

    if not args.skip_baseline:
        run_impl("baseline")
    fp_label, sdpa = run_impl("fast")

    if "baseline" in logits and "fast" in logits:
        a, b = logits["fast"], logits["baseline"]
        rel_l2 = float((a - b).norm() / b.norm().clamp_min(1e-30))
        max_rel = float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
        agree = float((a.argmax(1) == b.argmax(1)).float().mean())
        ok = rel_l2 <= args.tol
    else:
        rel_l2 = max_rel = agree = ok = None

    rows = []
    width = settings.get("d_model", settings.get("embed_dim"))
    for phase in phases:
        kind, batch = phase
        fwd_macs = macs_at_batch(macs, batch)
        flops = (6 if kind == "train" else 2) * fwd_macs  # training ~ 3x forward; 2 FLOPs per MAC
        row = dict(env, model=model_name, res=res, colour=colour, n_channels=n_ch, n_classes=n_cls, width=width,
                   params=params, phase=kind, batch=batch, fwd_macs_per_batch=fwd_macs, peak_tflops=args.peak_tflops,
                   fast_path=fp_label, sdpa_fused=sdpa, logits_rel_l2=rel_l2, logits_max_rel=max_rel,
                   argmax_agree=agree, tol_rel_l2=args.tol, numerics_ok=ok, repeats=args.repeats,
                   warmup=args.warmup, status="; ".join(status[phase]) or "ok")
        for impl in ("baseline", "fast"):
            r = results[(impl, phase)]
            row[f"{impl}_ms"] = r[0] * 1e3 if r else None
            row[f"{impl}_samples_s"] = batch / r[0] if r else None
            row[f"{impl}_tflops"] = flops / r[0] / 1e12 if r else None
            row[f"{impl}_peak_mib"] = r[1] if r else None
            row[f"{impl}_warmup_s"] = r[2] if r else None
        if row["baseline_samples_s"] and row["fast_samples_s"]:
            row["speedup"] = row["fast_samples_s"] / row["baseline_samples_s"]
        row["fast_frac_peak"] = row["fast_tflops"] / args.peak_tflops if row["fast_tflops"] else None
        rows.append({k: row.get(k) for k in COLUMNS})
    return rows


KERNEL_KINDS = (  # first match wins; names of cuFFT, cuBLAS/cuBLASLt (nvjet, sm90_xmma), flash/mem-eff attention
    ("fft", ("fft",)),
    ("attention", ("flash", "fmha", "attention")),
    ("gemm", ("gemm", "nvjet", "xmma", "cutlass", "wgmma", "cublas")),
    ("optimizer", ("adam", "multi_tensor", "foreach")),
    ("norm", ("layer_norm", "layernorm")),
    ("copy/transpose", ("copy", "transpose", "cat", "pad")),
    ("reduction", ("reduce",)),
)
KERNEL_PROFILE = []  # rows for --kernel-profile
KERNEL_TOP = []  # the most expensive kernels of each profiled step (--kernel-profile, file *_top.csv)


def kernel_kind(name: str) -> str:
    low = name.lower()
    for kind, needles in KERNEL_KINDS:
        if any(n in low for n in needles):
            return kind
    return "elementwise/other"


def kernel_breakdown(fn, device, steps: int, step_ms: float, label: dict) -> None:
    """GPU kernel time per step by kind, from torch.profiler, next to the timed step's wall time.

    If the kernels add up to much less than the step's wall time, the GPU waits
    on the host (launches, Python); if they fill it, the kinds say where it goes.
    """
    from torch.profiler import ProfilerActivity, profile

    fn()
    sync(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        sync(device)
    per_kind, count, kernels = {}, {}, []
    for evt in prof.key_averages():
        if str(getattr(evt, "device_type", "")).split(".")[-1] != "CUDA":
            continue
        if evt.key.startswith("Optimizer."):  # the optimizer's profiler annotation, not a kernel (its kernels count)
            continue
        t = getattr(evt, "self_device_time_total", None)
        if t is None:
            t = getattr(evt, "self_cuda_time_total", 0.0)
        kind = kernel_kind(evt.key)
        per_kind[kind] = per_kind.get(kind, 0.0) + t / 1e3 / steps  # us -> ms per step
        count[kind] = count.get(kind, 0) + evt.count / steps
        kernels.append((t / 1e3 / steps, evt.count / steps, kind, evt.key))
    total = sum(per_kind.values())
    for ms, n, kind, name in sorted(kernels, reverse=True)[:15]:
        KERNEL_TOP.append(dict(label, kernel=name[:160], kind=kind, ms_per_step=ms, launches_per_step=n,
                               share_of_kernel_time=ms / total if total else None))
    for kind in sorted(per_kind, key=per_kind.get, reverse=True):
        KERNEL_PROFILE.append(dict(label, kind=kind, kernel_ms_per_step=per_kind[kind],
                                   kernels_per_step=count[kind], share_of_kernel_time=per_kind[kind] / total,
                                   step_wall_ms=step_ms, kernel_ms_total=total,
                                   gpu_busy_fraction=total / step_ms if step_ms else None))


def fmt(v, spec=".3g"):
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def print_table(rows):
    cols = [("model", "model", "s"), ("res", "res", "s"), ("colour", "col", "s"), ("phase", "phase", "s"),
            ("batch", "batch", "s"), ("baseline_samples_s", "base/s", ".4g"), ("fast_samples_s", "fast/s", ".4g"),
            ("speedup", "x", ".2f"), ("fast_tflops", "TFLOP/s", ".3g"), ("fast_frac_peak", "%peak", ".1%"),
            ("baseline_peak_mib", "baseMiB", ".0f"), ("fast_peak_mib", "fastMiB", ".0f"),
            ("fast_warmup_s", "warm_s", ".1f"), ("logits_rel_l2", "relL2", ".1e"), ("status", "status", "s")]
    table = [[h for _, h, _ in cols]] + [[fmt(r[k], s if s != "s" else "") for k, _, s in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def write_rows(path, rows, fieldnames=COLUMNS) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)


def read_rows(path) -> list[dict]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.summarize:
        write_rows(args.summary, summary_rows(read_rows(args.summarize), Path(args.summarize).as_posix()), SUMMARY_COLUMNS)
        print(f"# wrote {args.summary} from {args.summarize}")
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available here; run on a GPU machine or pass --device cpu --quick", file=sys.stderr)
        return 2
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    cfg = load([args.config]) if args.config else resolve({})
    if args.quick:
        cfg["models"] = copy.deepcopy(QUICK_MODELS)
    requested_fp = dict(cfg["train"]["fast_path"])
    requested_fp.update(compile=args.compile or requested_fp["compile"],
                        cuda_graphs=args.cuda_graphs or requested_fp["cuda_graphs"])
    if args.no_bf16:
        requested_fp["bf16_autocast"] = False
    if args.no_fused:
        requested_fp["fused_optimizer"] = False
    if args.no_compile:
        requested_fp["compile"] = False
    if args.compile_scope:
        requested_fp["compile_scope"] = args.compile_scope
    if args.no_chunked:
        requested_fp["s4d_chunked_conv"] = False
    if args.no_bf16_residual:
        requested_fp["bf16_residual"] = False
    env = environment(device)
    print(f"# {env['gpu']} | driver {env['driver'] or '-'} | CUDA {env['cuda'] or '-'} | torch {env['torch']} | "
          f"fast path requested {requested_fp}", flush=True)
    rows = []
    for colour in args.colours:
        for res in args.res:
            for model_name in args.models:
                t0 = time.perf_counter()
                new = bench_config(args, cfg, env, device, model_name, res, colour, requested_fp)
                rows += new
                print(f"# {model_name} {res}x{res} {colour}: {time.perf_counter() - t0:.1f} s", flush=True)
                write_rows(args.out, rows)  # after every configuration: a crash or timeout keeps the rows so far
    print_table(rows)
    print(f"# wrote {args.out}")
    if device.type == "cuda" and not args.quick:
        write_rows(args.summary, summary_rows(rows, Path(args.out).as_posix()), SUMMARY_COLUMNS)
        print(f"# wrote {args.summary}")
    if args.kernel_profile and KERNEL_PROFILE:
        kp = Path(args.kernel_profile)
        write_rows(kp, KERNEL_PROFILE, list(KERNEL_PROFILE[0]))
        for r in KERNEL_PROFILE:
            print(f"  {r['model']:>4} {r['res']:>3} {r['colour']:>4} bs{r['batch']}: {r['kind']:<18} "
                  f"{r['kernel_ms_per_step']:7.2f} ms/step ({r['share_of_kernel_time']:5.1%} of kernels, "
                  f"{r['kernels_per_step']:6.0f} launches) | kernels {r['kernel_ms_total']:.2f} of "
                  f"{r['step_wall_ms']:.2f} ms wall ({r['gpu_busy_fraction']:.0%} busy)")
        print(f"# wrote {kp}")
        top = kp.with_name(kp.stem + "_top.csv")
        write_rows(top, KERNEL_TOP, list(KERNEL_TOP[0]))
        for r in KERNEL_TOP:
            print(f"  {r['model']:>4} {r['res']:>3} {r['colour']:>4}: {r['ms_per_step']:7.2f} ms x{r['launches_per_step']:4.0f} "
                  f"{r['kind']:<18} {r['kernel'][:110]}")
        print(f"# wrote {top}")
    bad = sorted({(r["model"], r["res"], r["colour"]) for r in rows if r["numerics_ok"] is False})
    if bad:
        print(f"NUMERICS CHECK FAILED (relative L2 of logits > {args.tol}) for {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
