"""Profile one model at one resolution: size, MACs, speed and memory, each input shape measured once.

Shapes only: the number of channels and classes come from
``datasets.describe``; no image is read. Inputs and labels are random
tensors created directly on the profiled device, so host-to-device copies
and data loading are not part of any number here (they are not part of a
training step in this pipeline either: ``training.DeviceData`` keeps the
dataset on the device).

Method (also written into every profile under ``method``):

* Timing: each repeat times one call (a training step, or one forward pass)
  after ``warmup`` untimed calls. On CUDA with CUDA events around the call,
  the stream synchronised before each repeat; on CPU with
  ``time.perf_counter`` (CPU ops are synchronous). Reported: samples/s
  median, min, max and quartiles over the repeats, and the raw times.
* Two regimes, each measured and labelled apart. The seed's: the plain
  eager model in fp32, a training step being zero_grad, forward,
  cross-entropy, backward, AdamW step (the study's
  ``training.build_optimizer``, so S4D's SSM parameter group too). As
  trained: the fast path of ``train.fast_path`` resolved on the profiled
  device exactly as ``training.train_one_run`` resolves it, the training
  step being the one the runs take (``fastpath.make_train_step``: bf16
  autocast, fused AdamW, compiled blocks, the whole step in a CUDA graph,
  whichever apply) and inference the fast path's forward
  (``fastpath.inference_forward`` of the compiled blocks under its
  autocast). Its warm-up has at least ``GRAPH_WARMUP_STEPS`` + 2 calls, so
  that compiling and the graph capture happen before the timed repeats, and
  it reads the study's inductor cache (``paths.COMPILE_CACHE``) as the
  trainings do. On CPU no part of the fast path applies, so both regimes
  run the plain fp32 step (recorded in ``trained_fast_path``).
* Training at ``train.batch_size``; inference in eval mode under
  ``torch.inference_mode`` at each batch size; latency = median time of one
  batch-1 forward pass.
* Memory on CUDA: peak counters are reset after warm-up, then
  ``max_memory_allocated`` / ``max_memory_reserved`` over the timed
  repeats. The static part is weights + AdamW state (exp_avg, exp_avg_sq,
  step), counted from the tensors. On CPU there is no VRAM: those fields
  are None (never 0) with ``vram_note``; the host's peak resident set size
  (RSS, whole process: Python, torch and the model) is recorded instead,
  reset before each phase where Linux allows it (``/proc/self/clear_refs``).
  MB here means MiB (2**20 bytes), as nvidia-smi reports.
* Out of memory at a batch size (``torch.cuda.OutOfMemoryError``, a CPU
  allocator error, or the optional ``memory_cap_mb`` exceeded during
  warm-up) is recorded as status "OOM" for that batch size (in
  efficiency.csv: an empty cell, named in the row's ``oom`` column); memory
  is freed and profiling goes on with the next one. An as-trained phase that
  fails otherwise (an op with no bf16 kernel, as ``torch.fft.rfft`` on
  CUDA, which raised "Unsupported dtype BFloat16" before ``models/s4d.py``
  cast the FFT's inputs to fp32) is recorded with status "failed" and the
  error (``trained_note``); its row cells are None.
* MACs: one forward pass at batch 1, three ways (``ssmvit.macs``), counted
  on a CPU copy of the model, so they do not depend on the profiled device.
* Where a profile job's time goes: ``phase_seconds`` (counting MACs, the
  fp32 training step and inference, the as-trained step with its compile and
  graph capture, the as-trained inference with its compiles), each phase's
  wall seconds including its warm-up and timed repeats; and
  ``train.trained_compile_cache``, how many of the as-trained phase's graphs
  inductor and AOT autograd found in the study's compile cache (hits) or
  compiled (misses): after its compile job, a profile should only hit.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import time
from datetime import datetime, timezone

import torch
import torch.nn as nn
import torch.nn.functional as F

from .catalog import check_choice, describe
from .config import model_settings
from .fastpath import (
    GRAPH_WARMUP_STEPS,
    compile_cache_counts,
    compile_model,
    fresh_compiles,
    inference_forward,
    is_compile_error,
    make_train_step,
    resolve_fast_path,
)
from .macs import count_macs_analytic, count_macs_flopcounter, count_macs_thop, count_mult_adds_torchinfo, example_input
from .models import INPUT_LAYOUT, build_model, count_params
from .tables import CAVEAT_SEPARATOR, DYNAMIC_CAVEAT, OOM_SEPARATOR, TRAINED_CAVEAT
from .training import build_optimizer, resolve_device, use_study_compile_cache

MIB = 2 ** 20
DEFAULT_BATCH_SIZES = (1, 64, 256, 1024)
DEFAULT_REPEATS = 10
DEFAULT_WARMUP = 3
DATA_NOTE = "shapes only; random inputs created on the device (no images read)"
VRAM_NOTE_CPU = "not applicable on CPU"
OOM = "OOM"
# What a profile JSON holds. 2: torchinfo's total beside the three MAC counts, and the analytic count without
# elementwise work (the paper's one cost model). 3: the as-trained regime (the runs' fast path) in place of
# plain bf16 autocast, which no run used. A profile of an older format is refused by aggregate.
PROFILE_FORMAT = 3
FAILED = "failed"  # an as-trained phase that raised something other than out-of-memory
# train.trained_compiles: how the as-trained phase compiled. FRESH_COMPILES: in fastpath.fresh_compiles (profiles
# before static shapes); STATIC_COMPILES: there, and one static graph per batch size (fastpath.compile_model).
FRESH_COMPILES = "fresh per input shape"
STATIC_COMPILES = "fresh per input shape, static batch sizes"
REGIMES = {"fp32": "the seed's regime: plain eager model, fp32",
           "trained": "as trained: the runs' fast path (train.fast_path, resolved on this device)"}

class MemoryCapExceeded(RuntimeError):
    """The configured memory cap was exceeded; handled exactly like an allocator's out-of-memory."""


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` means the device ran out of memory (CUDA, the CPU allocator, or our cap)."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryCapExceeded)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("out of memory", "not enough memory", "can't allocate memory"))


# ------------------------------------------------------------------------------ environment
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _nvidia_smi(device: torch.device) -> dict | None:
    """Driver, clocks and power limit of the profiled GPU from nvidia-smi, or None where unreadable."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    fields = ["driver_version", "clocks.sm", "clocks.mem", "clocks.max.sm", "clocks.max.mem",
              "power.limit", "pstate", "persistence_mode"]
    try:
        # The UUID names the same card whatever CUDA_VISIBLE_DEVICES does to indices.
        uuid = str(torch.cuda.get_device_properties(device).uuid)
        target = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
        out = subprocess.run([exe, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits", "-i", target],
                             capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError, RuntimeError, AttributeError):
        return None
    values = [v.strip() for v in out.splitlines()[0].split(",")] if out else []
    if len(values) != len(fields):
        return None

    def num(v):
        with contextlib.suppress(ValueError):
            return float(v)
        return None if v.startswith("[") else v  # "[N/A]", "[Not Supported]"

    return {f: num(v) for f, v in zip(fields, values)}


def environment(device: torch.device) -> dict:
    """Where the numbers were measured: device, versions, clocks (where readable), host, date."""
    env = {
        "device_type": device.type,
        "device_name": _cpu_model(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "hostname": socket.gethostname(),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cuda": torch.version.cuda,
        "cudnn": None, "gpu_driver": None, "gpu_memory_total_mb": None, "compute_capability": None,
        "gpu_clocks_mhz": None, "gpu_power_limit_w": None, "gpu_pstate": None,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(device_name=props.name, gpu_memory_total_mb=props.total_memory / MIB,
                   compute_capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version())
        smi = _nvidia_smi(device)
        if smi:
            env.update(gpu_driver=smi["driver_version"], gpu_power_limit_w=smi["power.limit"], gpu_pstate=smi["pstate"],
                       gpu_clocks_mhz={k.replace("clocks.", ""): smi[k] for k in smi if k.startswith("clocks.")})
    return env


# ----------------------------------------------------------------------------------- memory
def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _rss_mb(key: str = "VmHWM") -> float | None:
    """VmHWM (peak) or VmRSS (now) from /proc, in MiB; the lifetime peak from getrusage elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        with open("/proc/self/status") as fh:
            m = re.search(rf"^{key}:\s+(\d+)\s+kB", fh.read(), re.M)
        if m:
            return int(m.group(1)) / 1024
    if key == "VmHWM":
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (MIB if platform.system() == "Darwin" else 1024)  # bytes on macOS, KiB on Linux
    return None


class _Peaks:
    """Peak memory over one phase: reset at ``reset()``, read at ``read()``."""

    def __init__(self, device: torch.device):
        self.device = device
        self.rss_resettable = False
        self.rss_before = None

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.rss_resettable = _reset_peak_rss()
        self.rss_before = _rss_mb("VmRSS")

    def current_peak_mb(self) -> float | None:
        """The number a memory cap is checked against: reserved VRAM on CUDA, peak RSS on CPU."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_reserved(self.device) / MIB
        return _rss_mb("VmHWM")

    def read(self) -> dict:
        out = {"peak_rss_mb": _rss_mb("VmHWM"), "rss_before_mb": self.rss_before,
               "peak_rss_scope": "this phase" if self.rss_resettable else "process lifetime (reset not allowed)"}
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            out.update(peak_allocated_mb=torch.cuda.max_memory_allocated(self.device) / MIB,
                       peak_reserved_mb=torch.cuda.max_memory_reserved(self.device) / MIB, vram_note=None)
        else:
            out.update(peak_allocated_mb=None, peak_reserved_mb=None, vram_note=VRAM_NOTE_CPU)
        return out


def _check_cap(peaks: _Peaks, cap_mb: float | None) -> None:
    if cap_mb is not None:
        used = peaks.current_peak_mb()
        if used is not None and used > cap_mb:
            raise MemoryCapExceeded(f"out of memory: {used:.0f} MB used, memory cap {cap_mb:.0f} MB")


def _error_note(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _free(device: torch.device, collect: bool = False) -> None:
    """Give memory back between phases. A garbage collection (~0.2 s with torch loaded) runs on CUDA,
    where cached blocks must be unreferenced before ``empty_cache``, and after an exception, whose
    traceback cycles can hold tensors; on CPU reference counting already freed everything else."""
    if collect or device.type == "cuda":
        gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


# ----------------------------------------------------------------------------------- timing
def time_calls(fn, device: torch.device, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` (CUDA events on a GPU; also used by bench/bench_train.py)."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # nothing earlier overlaps the timed call
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return times


def _rate_summary(batch: int, times: list[float]) -> dict:
    rates = sorted(batch / t for t in times)
    q25, _, q75 = statistics.quantiles(rates, n=4, method="inclusive") if len(rates) > 1 else (rates[0],) * 3
    return {"samples_per_s_median": statistics.median(rates), "samples_per_s_min": rates[0],
            "samples_per_s_max": rates[-1], "samples_per_s_q25": q25, "samples_per_s_q75": q75,
            "seconds_median": statistics.median(times), "times_ms": [t * 1e3 for t in times],
            "repeats": len(times)}


# ------------------------------------------------------------------------------------ phases
class _PhaseClock:
    """Wall seconds of a profile's phases, each from the end of the one before: where a profile job's time goes
    (counting MACs, the fp32 measurements, the as-trained step with its compile and graph capture, the as-trained
    inference with its compiles), beside the timed repeats that are the measurements."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._t, 3)
        self._t = now


def _profile_training(model, optimizer, model_name, n_channels, n_classes, res, device, batch,
                      repeats, warmup, cap_mb, train_step=None) -> dict | str:
    """The plain fp32 step on ``model`` and ``optimizer``, or ``train_step(x, y)`` (a ``fastpath.TrainStep``).

    The plain step's peak memory is read over the timed repeats (the optimizer state exists by then). A
    ``train_step``'s is read from the start of the warm-up: a CUDA graph allocates its activations once, while it
    is captured in the warm-up, and its replays allocate nothing the counters would see.
    """
    model.train()
    peaks = _Peaks(device)
    x = y = step = None
    try:
        x = example_input(model_name, n_channels, res, batch, device)
        y = torch.randint(0, n_classes, (batch,), device=device)

        def step():
            if train_step is not None:
                train_step(x, y)
                return
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()

        peaks.reset()
        for _ in range(warmup):
            step()
        _check_cap(peaks, cap_mb)
        if train_step is None:
            peaks.reset()  # from here on: the steady state, optimizer state already allocated
        result = _rate_summary(batch, time_calls(step, device, repeats))
        result.update(peaks.read())
        return result
    except RuntimeError as exc:
        if not is_oom(exc):
            raise
        note = _error_note(exc)
    x = y = step = None  # drop the batch before freeing
    model.zero_grad(set_to_none=True)  # gradients of a half-done step hold memory
    _free(device, collect=True)
    return {"status": OOM, "error": note}


def _profile_inference(model, model_name, n_channels, res, device, batch, repeats, warmup, cap_mb,
                       forward=None) -> dict:
    """Plain ``model(x)`` under inference mode, or ``forward(x)`` (``fastpath.inference_forward``)."""
    model.eval()
    peaks = _Peaks(device)
    x = None
    call = forward or model
    try:
        x = example_input(model_name, n_channels, res, batch, device)
        with torch.inference_mode():
            peaks.reset()
            for _ in range(warmup):
                call(x)
            _check_cap(peaks, cap_mb)
            peaks.reset()
            result = _rate_summary(batch, time_calls(lambda: call(x), device, repeats))
        result.update(peaks.read())
        return result
    except RuntimeError as exc:
        if not is_oom(exc):
            raise
        note = _error_note(exc)
    x = None  # drop the batch before freeing
    _free(device, collect=True)
    return {"status": OOM, "error": note}


def _static_memory(model: nn.Module, optimizer) -> dict:
    weights = _tensor_bytes(model.parameters())
    state = _tensor_bytes(t for s in optimizer.state.values() for t in s.values())
    return {"weights_mb": weights / MIB, "optimizer_state_mb": state / MIB, "static_mb": (weights + state) / MIB,
            "gradients_mb": weights / MIB,
            "note": "static = weights + AdamW state (counted from the tensors); gradients (same size as the "
                    "weights) exist from backward to the next zero_grad and are not counted as static"}


# ------------------------------------------------------------------------------------- entry
def count_macs(model: nn.Module, model_name: str, n_channels: int, n_classes: int, res: int, settings: dict,
               seed: int = 0) -> dict:
    """The profile's ``macs`` entry: one forward pass at batch 1 of ``model`` (on the CPU) counted three ways,
    plus torchinfo's total."""
    example = example_input(model_name, n_channels, res, 1, "cpu", torch.Generator().manual_seed(seed))
    analytic = count_macs_analytic(model_name, n_channels, n_classes, res, settings)
    macs = {"batch": 1, "thop": count_macs_thop(model, example),
            "flopcounter": count_macs_flopcounter(model, example), "analytic": analytic["total"],
            "analytic_breakdown": analytic, "torchinfo_mult_adds": count_mult_adds_torchinfo(model, example),
            "method": "one forward pass at batch 1 on a CPU copy; MACs = FLOPs/2. thop: module hooks "
                      "(Linear/Conv, affine LayerNorm as 4 ops per element; no attention matmuls, FFT or "
                      "S4D kernel). flopcounter: torch FlopCounterMode with SDPA on its math backend "
                      "(attention matmuls and S4D's kernel bmm counted; FFT 0). analytic: "
                      "ssmvit.macs.count_macs_analytic (matmuls, attention, FFTs at 2.5 n log2 n FLOPs per "
                      "real FFT, S4D's kernel matmul once per forward, no elementwise work). "
                      "torchinfo_mult_adds: torchinfo's \"Total mult-adds\" "
                      "(the seed study's column; a Linear on a sequence charged once per sample, bias adds counted, "
                      "tensor functions not counted): not a MAC count."}
    return macs


def _profile_as_trained(cfg, model_name, n_channels, n_classes, res, settings, initial, fast_path, dev, train,
                        batch_sizes, repeats, warmup, memory_cap_mb, phases) -> dict:
    """The as-trained regime on a fresh copy with the ``initial`` weights: fills ``train``'s "trained" entries and
    returns the inference results per batch size. ``phases`` (a ``_PhaseClock``) times its training step (compile and
    graph capture included) and its inference apart."""
    from .aggregate import training_arithmetic

    tcfg, mcfg = cfg["train"], cfg["models"][model_name]
    lr, wd, ssm_lr = float(mcfg["lr"]), float(tcfg["weight_decay"]), mcfg.get("ssm_lr")
    train_batch = train["batch_size"]
    if fast_path.compile:
        use_study_compile_cache(cfg)
    trained_model = build_model(model_name, n_channels, n_classes, int(res), **settings)
    trained_model.load_state_dict(initial)
    trained_model.to(dev)
    trained_opt = build_optimizer(trained_model, lr, wd, ssm_lr, fused=fast_path.fused_optimizer)
    step = make_train_step(trained_model, trained_opt, fast_path, dev)
    trained_warmup = max(warmup, GRAPH_WARMUP_STEPS + 2) if fast_path.cuda_graphs else warmup
    print(f"timing the training step as trained ({training_arithmetic(fast_path.as_dict())}) at batch {train_batch}",
          flush=True)
    inference_trained, notes = {}, []
    try:
        train["trained"] = _profile_training(trained_model, trained_opt, model_name, n_channels, n_classes, res, dev,
                                             train_batch, repeats, trained_warmup, memory_cap_mb, train_step=step)
        notes = [n for n in (step.compile_error, step.graph_error) if n]
        fast_path = step.fast_path  # what ran: a compiler or capture failure switches a part off
        trained_model.zero_grad(set_to_none=True)  # the graph's gradients: not part of inference
        del step, trained_opt  # and the graph with its memory pool
        _free(dev)
        phases.lap("trained_train")
        forward = inference_forward(compile_model(trained_model, fast_path), fast_path)
        for bs in batch_sizes:
            _free(dev)
            inference_trained[str(int(bs))] = _profile_inference(trained_model, model_name, n_channels, res, dev,
                                                                 int(bs), repeats, warmup, memory_cap_mb, forward)
    except Exception as exc:  # noqa: BLE001  re-raised below unless the fast path's own
        # The fast path is an extra: an op with no kernel in its precision, a compiler bug. Record why, leave the
        # numbers unmeasured (None in rows), and keep the seed regime's.
        if not (isinstance(exc, (RuntimeError, TypeError)) or is_compile_error(exc)):
            raise
        train["trained"] = train["trained"] or {"status": FAILED, "error": _error_note(exc)}
        notes.append(f"as trained failed: {_error_note(exc)}")
    train["trained_fast_path"] = fast_path.as_dict()
    train["trained_note"] = "; ".join(notes) or None
    del trained_model
    _free(dev)
    phases.lap("trained_inference" if "trained_train" in phases.seconds else "trained_train")
    return inference_trained


def _as_trained_phase(cfg, model_name, n_channels, n_classes, res, settings, initial, dev, train, batch_sizes,
                      repeats, warmup, memory_cap_mb, phases) -> dict | None:
    """``_profile_as_trained`` with the compiles of one input shape fresh, as in its own training process; None
    (``train["trained_fast_path"]`` set) where no part of the fast path applies on ``dev``. The compile stage
    (``compile_as_trained``) runs this too, so that it compiles exactly the graphs a profile will."""
    fast_path = resolve_fast_path(cfg["train"].get("fast_path"), dev)
    if not any(fast_path.as_dict().values()):
        train["trained_fast_path"] = fast_path.as_dict()
        return None
    # each input shape compiles as in its own training process (fresh_compiles says why)
    train["trained_compiles"] = STATIC_COMPILES if fast_path.compile else None
    # one graph for the step and one per batch size, each twice where a block sees two input dtypes
    graphs = 2 * (1 + len(batch_sizes))
    before = compile_cache_counts()
    try:
        with fresh_compiles(graphs) if fast_path.compile else contextlib.nullcontext():
            return _profile_as_trained(cfg, model_name, n_channels, n_classes, res, settings, initial, fast_path, dev,
                                       train, batch_sizes, repeats, warmup, memory_cap_mb, phases)
    finally:  # what this shape's graphs found in the compile caches (a profile after its compile job: all hits)
        train["trained_compile_cache"] = {k: v - before[k] for k, v in compile_cache_counts().items()}


def profile_model(cfg: dict, dataset: str, res: int, model_name: str, device=None,
                  batch_sizes=None, repeats: int | None = None, warmup: int | None = None,
                  train_batch_size: int | None = None, memory_cap_mb: float | None = None,
                  seed: int = 0) -> dict:
    """Profile ``model_name`` on ``dataset`` at ``res`` x ``res``; a JSON-able dict (see the module docstring).

    Arguments left None come from the config's ``profile`` section (``device``,
    ``batch_sizes``, ``repeats``, ``warmup``), then from this module's defaults
    (auto, 1/64/256/1024, 10, 3). ``device``: "auto", "cpu", "cuda" or "cuda:N".
    ``train_batch_size``: None uses ``train.batch_size``.
    ``memory_cap_mb``: a batch size whose warm-up pushes the peak (reserved VRAM on CUDA,
    process RSS on CPU) above this is recorded as OOM, as if the device were that small.
    """

    t_start, started_at = time.perf_counter(), time.time()
    check_choice("model", model_name, tuple(INPUT_LAYOUT))
    pcfg = cfg.get("profile") or {}
    batch_sizes = tuple(int(b) for b in (batch_sizes or pcfg.get("batch_sizes") or DEFAULT_BATCH_SIZES))
    repeats = int(repeats if repeats is not None else pcfg.get("repeats", DEFAULT_REPEATS))
    warmup = int(warmup if warmup is not None else pcfg.get("warmup", DEFAULT_WARMUP))
    if repeats < 1 or warmup < 0 or min(batch_sizes) < 1:
        raise ValueError("repeats and batch sizes must be >= 1, warmup >= 0")
    tcfg = cfg["train"]
    if tcfg.get("threads"):
        torch.set_num_threads(int(tcfg["threads"]))
    dev = resolve_device(device or pcfg.get("device") or tcfg["device"])
    info = describe(dataset)
    n_channels, n_classes = info["n_channels"], info["n_classes"]
    settings = model_settings(cfg, model_name, n_channels)
    train_batch = int(train_batch_size or tcfg["batch_size"])

    torch.manual_seed(seed)
    phases = _PhaseClock()
    model = build_model(model_name, n_channels, n_classes, int(res), **settings)
    print(f"profiling {model_name} on {dataset}-shaped inputs ({n_channels}x{res}x{res}, {n_classes} classes) on {dev}: "
          "counting MACs three ways", flush=True)
    macs = count_macs(model, model_name, n_channels, n_classes, res, settings, seed)
    phases.lap("macs")

    initial = {k: v.clone() for k, v in model.state_dict().items()}  # both regimes start from these weights
    model.to(dev)
    mcfg = cfg["models"][model_name]
    lr, wd, ssm_lr = float(mcfg["lr"]), float(tcfg["weight_decay"]), mcfg.get("ssm_lr")
    optimizer = build_optimizer(model, lr, wd, ssm_lr)
    env = environment(dev)  # before the measurements: clocks and date as the run starts
    train = {"batch_size": train_batch, "optimizer": "AdamW via training.build_optimizer", "regimes": REGIMES,
             "fp32": None, "trained": None, "trained_fast_path": None, "trained_note": None,
             "trained_compiles": None, "trained_compile_cache": None}
    print(f"timing the fp32 eager training step at batch {train_batch} ({repeats} repeats)", flush=True)
    train["fp32"] = _profile_training(model, optimizer, model_name, n_channels, n_classes, res, dev, train_batch,
                                      repeats, warmup, memory_cap_mb)
    train["static"] = _static_memory(model, optimizer) if optimizer.state else None
    model.zero_grad(set_to_none=True)
    del optimizer
    _free(dev)  # empty the CUDA cache so the next phase's reserved memory is its own
    phases.lap("fp32_train")

    inference = {}
    print(f"timing fp32 eager inference at batch {', '.join(map(str, batch_sizes))}", flush=True)
    for bs in batch_sizes:
        _free(dev)
        inference[str(int(bs))] = _profile_inference(model, model_name, n_channels, res, dev, int(bs), repeats,
                                                     warmup, memory_cap_mb)
    model.cpu()
    _free(dev)
    phases.lap("fp32_inference")

    # As trained: a fresh copy with the same weights, through the training loop's own step.
    inference_trained = _as_trained_phase(cfg, model_name, n_channels, n_classes, res, settings, initial, dev, train,
                                          batch_sizes, repeats, warmup, memory_cap_mb, phases)
    if inference_trained is None:
        # No part of the fast path applies (a CPU, or every part switched off): the runs trained with the plain
        # fp32 step, which was just measured. Said so, not measured twice.
        train.update(trained=train["fp32"],
                     trained_note=f"no fast-path part applies on {dev.type}: as trained is the fp32 eager regime")
        inference_trained = inference
    bs1, bs1_trained = inference.get("1"), inference_trained.get("1")
    latency = bs1["seconds_median"] * 1e3 if isinstance(bs1, dict) and "seconds_median" in bs1 else None
    latency_trained = (bs1_trained["seconds_median"] * 1e3 if isinstance(bs1_trained, dict)
                       and "seconds_median" in bs1_trained else None)

    return {
        "format": PROFILE_FORMAT,
        "dataset": dataset, "resolution": int(res), "model": model_name,
        "n_channels": n_channels, "n_classes": n_classes, "settings": settings,
        "params": count_params(model), "macs": macs, "environment": env,
        "seconds": time.perf_counter() - t_start,
        "phase_seconds": phases.seconds,
        "started_at": started_at, "ended_at": time.time(),  # unix time: which other jobs ran meanwhile
        "train": train,
        "inference": {"precision": "fp32", "batch_sizes": [int(b) for b in batch_sizes], "results": inference,
                      "latency_bs1_ms": latency, "trained_results": inference_trained,
                      "latency_bs1_ms_trained": latency_trained},
        "method": {
            "data_note": DATA_NOTE, "repeats": int(repeats), "warmup": int(warmup), "seed": int(seed),
            "memory_cap_mb": memory_cap_mb, "mb": "MiB (2**20 bytes)",
            "timing": ("CUDA events around each call, stream synchronised before each repeat" if dev.type == "cuda"
                       else "time.perf_counter around each call (CPU ops are synchronous)"),
            "memory": ("torch.cuda max_memory_allocated / max_memory_reserved over the timed repeats, peak "
                       "counters reset after warm-up" if dev.type == "cuda" else
                       "no VRAM on CPU (fields None); process peak RSS (VmHWM) over the timed repeats"),
            "oom": "out-of-memory at a batch size is recorded as 'OOM' and profiling goes on",
        },
    }


# -------------------------------------------------------------------------------------- rows
def trained_caveats(profiles: list[dict]) -> list[str | None]:
    """The caveats of each profile's as-trained numbers (joined by ``tables.CAVEAT_SEPARATOR``), else None.

    ``TRAINED_CAVEAT`` (may be partly eager): a profile whose as-trained regime compiled, written before the compiles
    were made fresh per input shape (no ``train.trained_compiles``), and timed after another such profile of its job
    (same resolution, model and device; ``started_at`` orders them, and a dataset that shares another's timings
    shares its ``started_at``). ``DYNAMIC_CAVEAT`` (inference above batch 1 on a graph for any batch size): a profile
    whose as-trained regime compiled, written before static batch sizes (``train.trained_compiles`` not
    ``STATIC_COMPILES``).
    """
    def key(p):  # one job: a resolution and model on one device
        return p["resolution"], p["model"], (p.get("environment") or {}).get("device_name")

    compiled = [bool((p["train"].get("trained_fast_path") or {}).get("compile")) for p in profiles]
    candidates = [c and "trained_compiles" not in p["train"] and p.get("started_at") is not None
                  for p, c in zip(profiles, compiled)]
    first: dict[tuple, float] = {}
    for p, candidate in zip(profiles, candidates):
        if candidate:
            first[key(p)] = min(first.get(key(p), math.inf), p["started_at"])
    out = []
    for p, c, candidate in zip(profiles, compiled, candidates):
        texts = [TRAINED_CAVEAT] if candidate and p["started_at"] > first[key(p)] else []
        if c and p["train"].get("trained_compiles") != STATIC_COMPILES:
            texts.append(DYNAMIC_CAVEAT)
        out.append(CAVEAT_SEPARATOR.join(texts) or None)
    return out


def profile_to_row(profile: dict, trained_caveat: str | None = None) -> dict:
    """One flat row of efficiency.csv from ``profile_model``'s dict: the columns of ``tables.EFFICIENCY`` first, in
    that order, then extras.

    A cell holds a number or None: None where the quantity was not measured, not applicable (VRAM on CPU) or ran
    out of memory; the row's ``oom`` cell names the columns of the last kind.
    """
    from .aggregate import training_arithmetic

    env, train, inf = profile["environment"], profile["train"], profile["inference"]
    results = inf["results"]
    vram = env["device_type"] == "cuda"
    fp32, trained = train.get("fp32"), train.get("trained")
    results_trained = inf.get("trained_results") or {}
    static = train.get("static")
    oom = []

    def cell(column, result, key, applicable=True):
        """A measured phase's value for ``column``; an out-of-memory phase leaves it empty and says so."""
        if result is None or not applicable:
            return None
        if "status" in result:  # out of memory, or a failed (unmeasured) as-trained phase
            if result["status"] == OOM:
                oom.append(column)
            return None
        return result.get(key)

    row = {
        "dataset": profile["dataset"], "resolution": profile["resolution"], "model": profile["model"],
        "n_channels": profile["n_channels"], "n_classes": profile["n_classes"], "params": profile["params"],
        "macs_thop": profile["macs"]["thop"], "macs_flopcounter": profile["macs"]["flopcounter"],
        "macs_analytic": profile["macs"]["analytic"],
        "macs_torchinfo": profile["macs"]["torchinfo_mult_adds"],
        "device_type": env["device_type"], "device_name": env["device_name"],
        "train_batch_size": train["batch_size"],
        "train_samples_per_s_fp32": cell("train_samples_per_s_fp32", fp32, "samples_per_s_median"),
        "train_samples_per_s_trained": cell("train_samples_per_s_trained", trained, "samples_per_s_median"),
        "train_peak_allocated_mb": cell("train_peak_allocated_mb", fp32, "peak_allocated_mb", vram),
        "train_peak_reserved_mb": cell("train_peak_reserved_mb", fp32, "peak_reserved_mb", vram),
        "static_mb": static["static_mb"] if static else None,
    }
    for bs in DEFAULT_BATCH_SIZES:
        col = f"infer_samples_per_s_bs{bs}"
        row[col] = cell(col, results.get(str(bs)), "samples_per_s_median")
    row["latency_bs1_ms"] = inf.get("latency_bs1_ms")
    row["infer_peak_allocated_mb_bs64"] = cell("infer_peak_allocated_mb_bs64", results.get("64"), "peak_allocated_mb",
                                               vram)
    row["peak_rss_mb"] = cell("peak_rss_mb", fp32, "peak_rss_mb")
    row["data_note"] = profile["method"]["data_note"]
    row["oom"] = None  # filled in last, once every cell is known
    # Extras: spread over the repeats, the as-trained regime's other cells, other batch sizes, VRAM note, environment.
    for regime, phase in (("fp32", fp32), ("trained", trained)):
        for stat in ("min", "q25", "q75", "max"):
            col = f"train_samples_per_s_{regime}_{stat}"
            row[col] = cell(col, phase, f"samples_per_s_{stat}")
    row.update({
        "train_peak_allocated_mb_trained": cell("train_peak_allocated_mb_trained", trained, "peak_allocated_mb", vram),
        "trained_fast_path": (training_arithmetic(train["trained_fast_path"], profile.get("model"))
                              if train.get("trained_fast_path")
                              is not None else None),  # None: the regime was not measured
        "timed_with": (profile.get("timed_with") or {}).get("dataset", profile["dataset"]),
        "trained_note": train.get("trained_note"),
        "trained_caveat": trained_caveat,  # trained_caveats: as-trained numbers that may understate the fast path
        "latency_bs1_ms_trained": inf.get("latency_bs1_ms_trained"),
        "vram_note": None if vram else VRAM_NOTE_CPU,
        "repeats": profile["method"]["repeats"], "warmup": profile["method"]["warmup"],
        "torch": env["torch"], "cuda": env["cuda"], "gpu_driver": env["gpu_driver"],
        "hostname": env["hostname"], "date_utc": env["date_utc"],
    })
    for bs in inf["batch_sizes"]:
        col = f"infer_samples_per_s_bs{bs}"
        if bs not in DEFAULT_BATCH_SIZES:
            row[col] = cell(col, results.get(str(bs)), "samples_per_s_median")
    for bs in inf["batch_sizes"]:
        fp32_bs, trained_bs = results.get(str(bs)), results_trained.get(str(bs))
        col = f"infer_peak_allocated_mb_bs{bs}"
        if col not in row:
            row[col] = cell(col, fp32_bs, "peak_allocated_mb", vram)
        cols = {f"infer_peak_rss_mb_bs{bs}": (fp32_bs, "peak_rss_mb", True),
                f"infer_samples_per_s_bs{bs}_trained": (trained_bs, "samples_per_s_median", True),
                f"infer_peak_allocated_mb_bs{bs}_trained": (trained_bs, "peak_allocated_mb", vram)}
        for stat in ("min", "q25", "q75", "max"):
            cols[f"infer_samples_per_s_bs{bs}_{stat}"] = (fp32_bs, f"samples_per_s_{stat}", True)
            cols[f"infer_samples_per_s_bs{bs}_trained_{stat}"] = (trained_bs, f"samples_per_s_{stat}", True)
        for col, (result, key, applicable) in cols.items():
            row[col] = cell(col, result, key, applicable)
    row["oom"] = OOM_SEPARATOR.join(oom) or None
    return row


# ---------------------------------------------------------------------------- one job, many datasets
def profile_datasets(cfg: dict, datasets, res: int, model_name: str, **kwargs) -> dict[str, dict]:
    """``profile_model`` once per input shape (number of channels) among ``datasets``; one profile per dataset.

    The shape's first dataset is timed (its number of classes sets the classifier head, a negligible part of the
    step); every dataset of that shape gets the same timings and memory, and its own parameter and MAC counts, with
    ``timed_with`` naming the timed dataset and ``seconds`` 0 (the time is the timed one's). Datasets that differ
    only in their name, classes or images therefore no longer differ in speed by measurement noise.
    ``kwargs`` go to ``profile_model``.
    """
    import copy

    datasets = list(dict.fromkeys(datasets))
    shapes: dict[int, list[str]] = {}
    for d in datasets:  # an unknown name fails here, before anything is measured
        shapes.setdefault(describe(d)["n_channels"], []).append(d)
    out = {}
    for group in shapes.values():
        timed = profile_model(cfg, group[0], res, model_name, **kwargs)
        timed["timed_with"] = {"dataset": group[0], "n_classes": timed["n_classes"], "shared_by": group}
        out[group[0]] = timed
        for d in group[1:]:
            info = describe(d)
            settings = model_settings(cfg, model_name, info["n_channels"])
            seed = int(kwargs.get("seed", 0))
            torch.manual_seed(seed)
            model = build_model(model_name, info["n_channels"], info["n_classes"], int(res), **settings)
            prof = copy.deepcopy(timed)
            prof.update(dataset=d, n_classes=info["n_classes"], params=count_params(model), seconds=0.0,
                        phase_seconds=None,  # like seconds: the timed dataset's profile holds them
                        macs=count_macs(model, model_name, info["n_channels"], info["n_classes"], res, settings, seed))
            out[d] = prof
    return {d: out[d] for d in datasets}


# ------------------------------------------------------------------------------- the compile stage
def _status(result) -> str:
    """"ok", "OOM" or "failed" for one measurement of ``_profile_as_trained`` (None: it did not run)."""
    if not isinstance(result, dict):
        return FAILED
    return result.get("status", "ok")


def compile_as_trained(cfg: dict, datasets, res: int, model_name: str, device=None, batch_sizes=None,
                       seed: int = 0) -> dict:
    """The compile stage: the graphs that ``profile_datasets`` will compile for its as-trained regime, compiled into
    the study's inductor cache ahead of it, each input shape once; a JSON-able record of what compiled and how long.

    Why: a profile has the machine to itself, so every second it spends compiling is a second no other job runs
    (bench/results/h100_compile_stage_2026-12-07/ has the seconds). This job shares a card with the trainings
    instead, and the profile then loads the compiled graphs from the cache. It runs the profile's own
    as-trained code (``_as_trained_phase``) once with one repeat, so that the graphs are the same; nothing it times
    is a measurement. Where ``train.fast_path.compile`` is off or does not apply on the device, there is nothing to
    compile. The record says per input shape what ran (``status``: the step's, and each batch size's inference, "ok",
    "OOM" or "failed"): a graph this job could not compile (out of memory beside the trainings, say) is compiled by
    the profile itself. A shape that fails outside those is recorded with its error too, and the job still succeeds:
    its only product is the cache, and the profile measures without it.
    """
    t_start, started_at = time.perf_counter(), time.time()
    pcfg, tcfg = cfg.get("profile") or {}, cfg["train"]
    batch_sizes = tuple(int(b) for b in (batch_sizes or pcfg.get("batch_sizes") or DEFAULT_BATCH_SIZES))
    if tcfg.get("threads"):
        torch.set_num_threads(int(tcfg["threads"]))
    dev = resolve_device(device or pcfg.get("device") or tcfg["device"])
    fast_path = resolve_fast_path(tcfg.get("fast_path"), dev)
    shapes: dict[int, list[str]] = {}
    for d in dict.fromkeys(datasets):  # grouped as profile_datasets groups them
        shapes.setdefault(describe(d)["n_channels"], []).append(d)
    record = {"resolution": int(res), "model": model_name, "device": str(dev),
              "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_model(),
              "torch": torch.__version__, "fast_path": fast_path.as_dict(), "batch_sizes": list(batch_sizes),
              "inductor_cache": None, "shapes": [], "seconds": None, "started_at": None, "ended_at": None,
              "note": None if fast_path.compile else f"train.fast_path.compile is off or does not apply on {dev.type}: "
                                                     "nothing to compile"}
    if fast_path.compile:
        use_study_compile_cache(cfg)
        record["inductor_cache"] = os.environ["TORCHINDUCTOR_CACHE_DIR"]
        for group in shapes.values():
            info = describe(group[0])
            n_channels, n_classes = info["n_channels"], info["n_classes"]
            settings = model_settings(cfg, model_name, n_channels)
            torch.manual_seed(seed)
            initial = build_model(model_name, n_channels, n_classes, int(res), **settings).state_dict()
            train = {"batch_size": int(tcfg["batch_size"]), "trained": None, "trained_fast_path": None,
                     "trained_note": None, "trained_compiles": None, "trained_compile_cache": None}
            phases = _PhaseClock()
            print(f"compiling {model_name} for {n_channels}x{res}x{res} inputs: the training step at batch "
                  f"{train['batch_size']}, inference at batch {', '.join(map(str, batch_sizes))}", flush=True)
            inference, error = {}, None
            try:
                inference = _as_trained_phase(cfg, model_name, n_channels, n_classes, res, settings, initial, dev, train,
                                              batch_sizes, 1, 1, None, phases) or {}
            except Exception as exc:  # noqa: BLE001  the profile compiles what this job could not
                error = f"compiling failed: {_error_note(exc)}"
                _free(dev, collect=True)
            status = {"train": _status(train["trained"])} | {str(b): _status(inference.get(str(b))) for b in batch_sizes}
            record["shapes"].append({"datasets": group, "n_channels": n_channels, "phase_seconds": phases.seconds,
                                     "compiles": train["trained_compiles"], "status": status,
                                     "compile_cache": train["trained_compile_cache"],
                                     "note": "; ".join(n for n in (train["trained_note"], error) if n) or None})
    record.update(seconds=time.perf_counter() - t_start, started_at=started_at, ended_at=time.time())
    return record
