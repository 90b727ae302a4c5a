"""The GPU fast path of a training step: which parts apply, and the step itself.

``train.fast_path`` in the config switches each part; a part applies only
where it can (all of them need CUDA), so on CPU the step is the plain fp32
eager step, operation for operation (a CPU run is bit-identical with or
without this module). Parts:

``bf16_autocast`` (default on)
    ``torch.autocast('cuda', dtype=torch.bfloat16)`` around forward and loss.
    Matmuls and convolutions run in bf16 (ViT attention goes to the fused
    flash / memory-efficient SDPA kernels); S4D's kernel generation and FFT
    convolution stay fp32 (``models.s4d`` switches autocast off there);
    LayerNorm, softmax and the loss are fp32 under autocast anyway. bf16
    needs no loss scaling. Only where ``torch.cuda.is_bf16_supported()``.
``fused_optimizer`` (default on)
    ``torch.optim.AdamW(fused=True)``: one kernel for the whole update.
``compile`` (default on)
    ``torch.compile`` of the training forward/backward over the scope
    ``compile_scope``: ``"blocks"`` (default) compiles the repeated residual
    block (``model.compile_blocks()``: ViT's transformer block, S4D's layer +
    dropout + residual + LayerNorm); all blocks of a model share one compiled
    graph, so compile time is that of one block (bench/README.md has the
    measured seconds), and the encoder/decoder, which change with the
    dataset, stay eager. ``"model"`` compiles the whole model (much longer
    compiles; inductor fails on ViT 64x64 training in torch 2.11). Only the
    training batch size is compiled: the last, smaller batch of an epoch and
    validation run the same modules eager, so nothing recompiles. If
    compiling fails, the step says so on one line, records it
    (``TrainStep.compile_error``, the training summary's
    ``fast_path_note``) and runs eager from the same state: a compiler bug
    costs speed, not the run. Checkpoints hold the same parameters under the
    same names either way.
``s4d_chunked_conv`` (default on; applies only together with ``compile``)
    S4D computes its convolution by chunks (``models.s4d.chunked_causal_conv``:
    Toeplitz matmuls within chunks of 256 (112 at 28x28), the SSM state
    between them) in an (H, B, L) layout instead of an FFT of length 2L in
    (B, H, L): the same function (equal to the FFT convolution in fp64,
    tested), as tensor-core matmuls (bf16 under autocast), without the
    transposes and the (B, H, 2L) complex spectra, and free of complex
    tensors so that inductor fuses everything around it. Eager, its many
    small operations make it slower than the FFT, hence tied to ``compile``.
    Sets ``S4DClassifier.conv_algorithm`` to ``"chunked"``.
``bf16_residual`` (default on; applies only together with ``bf16_autocast``)
    S4D's residual stream (each block's output, after a LayerNorm that
    still computes in fp32) is stored in bf16 instead of fp32, and so is
    what backward keeps of it: the 64x64 S4D step is bound by memory
    traffic, not arithmetic. Sets ``S4DClassifier.keep_residual_dtype``;
    ViT and ResNet-18 have no such switch and are unchanged.
``cuda_graphs`` (default on)
    The whole training step -- forward, loss, backward and the AdamW
    update -- captured once in a CUDA graph (``torch.cuda.graph``) with
    static input buffers and replayed for every batch of the captured size:
    one launch instead of hundreds, for the launch-bound small models.
    Works eager or compiled (compiled blocks are captured as they are).
    The first ``GRAPH_WARMUP_STEPS`` steps of that size run as usual on a
    side stream (they train; compiling happens there), then the step is
    captured and replayed. The optimizer is made capturable, and the
    learning rate reaches the graph through a device tensor refreshed from
    the scheduler's value before each replay. An epoch's last, smaller
    batch and validation run the same modules ungraphed, exactly as
    without graphs. A capture failure is reported like a compile failure
    (``TrainStep.graph_error``) and the step runs without graphs.

The training loop (``training.train_one_run``) and the benchmark
(``bench/bench_train.py``) both call ``make_train_step``, so the benchmark
times the step that training runs.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F


def default_fast_path() -> dict:
    """The requested parts by default: the schema's train.fast_path defaults."""
    from .config import defaults

    return defaults()["train"]["fast_path"]


COMPILE_SCOPES = ("blocks", "model")


@dataclass
class FastPath:
    """Which fast-path parts are active (not merely requested) on one device."""

    bf16_autocast: bool = False
    fused_optimizer: bool = False
    s4d_chunked_conv: bool = False
    compile: bool = False
    compile_scope: str | None = None  # "blocks" or "model" while compile is active, else None
    cuda_graphs: bool = False
    bf16_residual: bool = False

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self) if f.type in (bool, "bool"))

    def as_dict(self) -> dict:
        return asdict(self)

    def autocast(self):
        """The autocast context of forward + loss: bf16 on CUDA when active, else nothing.

        Without the cast cache when the step is graphed (a cached cast would outlive the capture).
        """
        if self.bf16_autocast:
            return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=not self.cuda_graphs)
        return contextlib.nullcontext()


def resolve_fast_path(requested: dict | FastPath | None, device) -> FastPath:
    """The parts of ``requested`` (config ``train.fast_path``; missing keys take the defaults) that apply on ``device``."""
    if isinstance(requested, FastPath):
        return FastPath(**requested.as_dict()) if torch.device(device).type == "cuda" else FastPath()
    default = default_fast_path()
    want = {**default, **(requested or {})}
    unknown = set(want) - set(default)
    if unknown:
        raise ValueError(f"unknown fast_path part(s) {sorted(unknown)}; valid: {', '.join(default)}")
    if want["compile_scope"] not in COMPILE_SCOPES:
        raise ValueError(f"unknown fast_path.compile_scope {want['compile_scope']!r}; valid: {', '.join(COMPILE_SCOPES)}")
    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return FastPath()
    return FastPath(
        bf16_autocast=bool(want["bf16_autocast"]) and torch.cuda.is_bf16_supported(),
        fused_optimizer=bool(want["fused_optimizer"]),
        s4d_chunked_conv=bool(want["s4d_chunked_conv"]) and bool(want["compile"]),
        compile=bool(want["compile"]),
        compile_scope=want["compile_scope"] if want["compile"] else None,
        cuda_graphs=bool(want["cuda_graphs"]),
        bf16_residual=bool(want["bf16_residual"]) and bool(want["bf16_autocast"]) and torch.cuda.is_bf16_supported(),
    )


def apply_to_model(model: nn.Module, fast_path: FastPath) -> nn.Module:
    """Set the model-side choices of ``fast_path`` on ``model`` (in place; returns it): S4D's convolution algorithm
    and the dtype of its residual stream."""
    if hasattr(model, "conv_algorithm"):
        model.conv_algorithm = "chunked" if fast_path.s4d_chunked_conv else "fft"
    if hasattr(model, "keep_residual_dtype"):
        model.keep_residual_dtype = fast_path.bf16_residual
    return model


def compile_model(model: nn.Module, fast_path: FastPath) -> nn.Module:
    """The module whose call runs ``model`` compiled as ``fast_path`` says (``model`` itself when not compiling).

    Scope "blocks": ``model`` itself with its blocks compiled (models without
    ``compile_blocks`` are compiled whole); the compiled blocks run while
    ``compiled_blocks(model, True)`` is in effect. Scope "model":
    ``torch.compile(model)``.

    Shapes are static (``dynamic=False``): each batch size gets its own graph. By default dynamo recompiles the
    second batch size it sees with a symbolic batch dimension, and the kernels of that graph compute their indices
    with divisions by runtime sizes; a profile (inference at four batch sizes after the training step) and the
    benchmark (a logits check before the step) timed such kernels, which a training job, compiling one batch size,
    never runs.
    """
    if not fast_path.compile:
        return model
    if fast_path.compile_scope == "blocks" and hasattr(model, "compile_blocks"):
        model.compile_blocks(dynamic=False)
        return model
    return torch.compile(model, dynamic=False)


@contextlib.contextmanager
def compiled_blocks(model: nn.Module, enabled: bool = True):
    """Within the block, ``model``'s compiled blocks (``compile_blocks``) run if ``enabled``, else its eager ones."""
    if not hasattr(model, "use_compiled_blocks"):
        yield
        return
    before = model.use_compiled_blocks
    model.use_compiled_blocks = enabled
    try:
        yield
    finally:
        model.use_compiled_blocks = before


@contextlib.contextmanager
def fresh_compiles(graphs: int = 0):
    """Within the block, compiling starts from an empty in-process dynamo cache, as in a new training process
    (inductor's on-disk cache still serves what was compiled before), dynamo's recompile limit is at least
    ``graphs``, and a compile past it raises instead of running that call eager.

    Why: every model of a process shares one compiled block function (``compile_blocks``), and dynamo allows 8
    graphs per function. A profile job compiles a train step and inference at 4 batch sizes per input shape, so its
    second shape reached the limit, and dynamo ran the rest eager with only a warning in the log. With static shapes
    (``compile_model``) each batch size is a graph, and a block that sees two input dtypes (S4D's first block gets
    the encoder's bf16 without ``bf16_residual``, the others fp32) doubles that: the caller says how many it needs.
    """
    torch._dynamo.reset()
    config = torch._dynamo.config
    # the flag's name since torch 2.7, and before (absent before 2.6); torch refuses it beside suppress_errors
    names = [n for n in ("fail_on_recompile_limit_hit", "fail_on_cache_limit_hit") if hasattr(config, n)][:1]
    strict = {} if getattr(config, "suppress_errors", False) else dict.fromkeys(names, True)
    limit = next((n for n in ("recompile_limit", "cache_size_limit") if hasattr(config, n)), None)
    if limit and graphs > getattr(config, limit):
        strict[limit] = graphs
    with config.patch(**strict):
        yield


def is_compile_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from torch.compile itself (dynamo, AOT autograd, inductor), not from the model's code."""
    return type(exc).__module__.startswith(("torch._dynamo", "torch._inductor", "torch._functorch"))


# torch's own counters of its on-disk compile caches: inductor's compiled graphs and AOT autograd's joint graphs
COMPILE_CACHE_COUNTERS = {
    "inductor_hits": ("inductor", "fxgraph_cache_hit"),
    "inductor_misses": ("inductor", "fxgraph_cache_miss"),
    "aot_autograd_hits": ("aot_autograd", "autograd_cache_hit"),
    "aot_autograd_misses": ("aot_autograd", "autograd_cache_miss"),
}


def compile_cache_counts() -> dict[str, int]:
    """How often this process found a compiled graph in the on-disk caches (hits) and compiled one (misses) so far.

    Why: a profile loads what its compile job compiled only where both use the same cache folder, torch and GPU; a
    miss says it compiled on the card it holds alone. Differences of two calls give what a phase hit and missed.
    """
    from torch._dynamo.utils import counters

    return {name: int(counters[group][key]) for name, (group, key) in COMPILE_CACHE_COUNTERS.items()}


GRAPH_WARMUP_STEPS = 3  # ungraphed steps before capture (PyTorch asks for a few on a side stream)


class TrainStep:
    """One optimisation step on a batch: forward + loss (under autocast when active), zero_grad, backward, step.

    Returns the detached loss (fp32 scalar) and logits; no host synchronisation.
    The learning-rate scheduler is the caller's (the benchmark has none).
    With ``compile`` active, batches of the first batch's size run compiled,
    others (an epoch's last, smaller batch) eager: no recompilation. With
    ``cuda_graphs`` active, batches of that size replay one captured graph
    of the whole step (see the module docstring). A compiler or capture
    failure switches that part off for good (``compile_error``, ``graph_error``).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, fast_path: FastPath):
        self.model = model  # the uncompiled module: state_dict, train()/eval()
        self.optimizer = optimizer
        self.fast_path = fast_path
        self.compile_error: str | None = None
        self.graph_error: str | None = None
        self.main_batch_size: int | None = None
        self._compiled_ran = False
        self._warm_steps = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self.graph_replays = 0  # steps that ran as one replayed graph
        self.forward_module = compile_model(apply_to_model(model, fast_path), fast_path)
        if fast_path.cuda_graphs:
            for group in optimizer.param_groups:  # the update's step counter and lr stay on the device
                group["capturable"] = True

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.main_batch_size is None:
            self.main_batch_size = x.shape[0]
        main = x.shape[0] == self.main_batch_size
        if not self.fast_path.cuda_graphs or not main:
            return self._ungraphed(x, y, main)
        if self._graph is not None:
            return self._replay(x, y)
        if self._warm_steps < GRAPH_WARMUP_STEPS:
            self._warm_steps += 1
            side = torch.cuda.Stream(x.device)
            side.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(side):
                out = self._ungraphed(x, y, main)
            torch.cuda.current_stream(x.device).wait_stream(side)
            return out
        try:
            self._capture(x, y)
        except Exception as exc:  # noqa: BLE001  a capture failure costs speed, not the run
            self._graph = None
            self.graph_error = f"CUDA graph capture failed ({type(exc).__name__}: {_first_lines(exc)}); running without graphs"
            print(f"warning: {self.graph_error}", flush=True)
            self.fast_path.cuda_graphs = False
            return self._ungraphed(x, y, main)
        return self._replay(x, y)

    def _ungraphed(self, x, y, main: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if not (self.fast_path.compile and main):
            return self._step(self.model, x, y, compiled=False)
        if self._compiled_ran:
            return self._step(self.forward_module, x, y, compiled=True)
        rng = (torch.get_rng_state(), torch.cuda.get_rng_state(x.device) if x.is_cuda else None)
        try:
            out = self._step(self.forward_module, x, y, compiled=True)
            self._compiled_ran = True
            return out
        except Exception as exc:  # noqa: BLE001  only compiler failures are caught; anything else re-raises
            if not is_compile_error(exc):
                raise
            self.compile_error = f"torch.compile failed ({type(exc).__name__}: {_first_lines(exc)}); running eager"
            print(f"warning: {self.compile_error}", flush=True)
            self.fast_path.compile = False
            self.fast_path.compile_scope = None
            self.fast_path.s4d_chunked_conv = False
            self.forward_module = apply_to_model(self.model, self.fast_path)
            torch.set_rng_state(rng[0])  # the eager retry draws the same dropout masks
            if rng[1] is not None:
                torch.cuda.set_rng_state(rng[1], x.device)
            return self._step(self.model, x, y, compiled=False)

    def _step(self, module: nn.Module, x, y, compiled: bool) -> tuple[torch.Tensor, torch.Tensor]:
        with compiled_blocks(self.model, compiled), self.fast_path.autocast():
            logits = module(x)
            loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # a compiled backward may compile on its first call: still inside the caller's try
        self.optimizer.step()
        return loss.detach(), logits.detach()

    def _capture(self, x, y) -> None:
        """Record the whole step on static buffers (nothing runs: the first replay makes this batch's step)."""
        self._x, self._y = x.detach().clone(), y.detach().clone()
        groups = self.optimizer.param_groups
        self._lr = [torch.tensor(float(g["lr"]), dtype=torch.float32, device=x.device) for g in groups]
        floats = [g["lr"] for g in groups]
        module, compiled = (self.forward_module, True) if self.fast_path.compile else (self.model, False)
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # the captured backward allocates the gradients it then writes
        try:
            for g, lr in zip(groups, self._lr):
                g["lr"] = lr  # the captured update reads the lr from this tensor
            with torch.cuda.graph(graph):
                with compiled_blocks(self.model, compiled), self.fast_path.autocast():
                    logits = module(self._x)
                    loss = F.cross_entropy(logits, self._y)
                loss.backward()
                self.optimizer.step()
        finally:
            for g, lr in zip(groups, floats):
                g["lr"] = lr  # the scheduler and checkpoints keep plain floats
        self._loss, self._logits = loss.detach(), logits.detach()
        self._graph = graph

    def _replay(self, x, y) -> tuple[torch.Tensor, torch.Tensor]:
        self._x.copy_(x)
        self._y.copy_(y)
        for g, lr in zip(self.optimizer.param_groups, self._lr):
            lr.fill_(g["lr"])
        self._graph.replay()
        self.graph_replays += 1
        return self._loss.clone(), self._logits.clone()  # the next replay overwrites the static outputs


def _first_lines(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:2])[:240]


def make_train_step(model: nn.Module, optimizer: torch.optim.Optimizer, fast_path_cfg: dict | FastPath | None,
                    device) -> TrainStep:
    """The training step of ``training.train_one_run`` for ``model`` on ``device``.

    ``fast_path_cfg``: the config's ``train.fast_path`` (or a resolved ``FastPath``).
    ``fused_optimizer`` is reported as what ``optimizer`` really is (build it
    with ``training.build_optimizer(..., fused=resolve_fast_path(...).fused_optimizer)``).
    """
    fp = resolve_fast_path(fast_path_cfg, device)
    fp.fused_optimizer = bool(optimizer.defaults.get("fused"))
    return TrainStep(model, optimizer, fp)


def inference_forward(model: nn.Module, fast_path: FastPath):
    """A forward function for evaluation under ``torch.inference_mode`` with the fast path's autocast.

    ``model`` may be compiled (``compile_model``; the benchmark times compiled inference that way);
    its compiled blocks run here. The pipeline's evaluation runs eager.
    """

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), fast_path.autocast(), compiled_blocks(model, True):
            return model(x)

    return forward
