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
    graph, so compile time is that of one block (about 5-10 s for ViT, 45 s
    for S4D on an H100), and the encoder/decoder, which change with the
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
``cuda_graphs`` (default off)
    CUDA graphs through ``torch.compile(mode="reduce-overhead")`` of the
    whole model (scope ``"model"`` whatever ``compile_scope`` says: graphs
    of the blocks alone fail, one block's replay overwriting the output the
    next block reads); applies only together with ``compile``.

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

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self) if f.type in (bool, "bool"))

    def as_dict(self) -> dict:
        return asdict(self)

    def autocast(self):
        """The autocast context of forward + loss: bf16 on CUDA when active, else nothing."""
        if self.bf16_autocast:
            return torch.autocast("cuda", dtype=torch.bfloat16)
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
        # CUDA graphs of the blocks alone fail (a block's graph output is overwritten by the next block's replay)
        compile_scope=(("model" if want["cuda_graphs"] else want["compile_scope"]) if want["compile"] else None),
        cuda_graphs=bool(want["compile"]) and bool(want["cuda_graphs"]),
    )


def apply_to_model(model: nn.Module, fast_path: FastPath) -> nn.Module:
    """Set the model-side choices of ``fast_path`` on ``model`` (in place; returns it): S4D's convolution algorithm."""
    if hasattr(model, "conv_algorithm"):
        model.conv_algorithm = "chunked" if fast_path.s4d_chunked_conv else "fft"
    return model


def compile_model(model: nn.Module, fast_path: FastPath) -> nn.Module:
    """The module whose call runs ``model`` compiled as ``fast_path`` says (``model`` itself when not compiling).

    Scope "blocks": ``model`` itself with its blocks compiled (models without
    ``compile_blocks`` are compiled whole); the compiled blocks run while
    ``compiled_blocks(model, True)`` is in effect. Scope "model":
    ``torch.compile(model)`` (mode reduce-overhead with CUDA graphs).
    """
    if not fast_path.compile:
        return model
    if fast_path.compile_scope == "blocks" and not fast_path.cuda_graphs and hasattr(model, "compile_blocks"):
        model.compile_blocks()
        return model
    return torch.compile(model, mode="reduce-overhead" if fast_path.cuda_graphs else None)


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


def is_compile_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from torch.compile itself (dynamo, AOT autograd, inductor), not from the model's code."""
    return type(exc).__module__.startswith(("torch._dynamo", "torch._inductor", "torch._functorch"))


class TrainStep:
    """One optimisation step on a batch: forward + loss (under autocast when active), zero_grad, backward, step.

    Returns the detached loss (fp32 scalar) and logits; no host synchronisation.
    The learning-rate scheduler is the caller's (the benchmark has none).
    With ``compile`` active, batches of the first batch's size run compiled,
    others (an epoch's last, smaller batch) eager: no recompilation. A
    compiler failure switches the step to eager for good (``compile_error``).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, fast_path: FastPath):
        self.model = model  # the uncompiled module: state_dict, train()/eval()
        self.optimizer = optimizer
        self.fast_path = fast_path
        self.compile_error: str | None = None
        self.compiled_batch_size: int | None = None
        self._compiled_ran = False
        self.forward_module = compile_model(apply_to_model(model, fast_path), fast_path)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.fast_path.compile:
            return self._step(self.model, x, y, compiled=False)
        if self.compiled_batch_size is None:
            self.compiled_batch_size = x.shape[0]
        if x.shape[0] != self.compiled_batch_size:
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
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            self.compile_error = f"torch.compile failed ({type(exc).__name__}: {' '.join(lines[:2])[:240]}); running eager"
            print(f"warning: {self.compile_error}", flush=True)
            self.fast_path.compile = self.fast_path.cuda_graphs = False
            self.fast_path.compile_scope = None
            self.fast_path.s4d_chunked_conv = False
            self.forward_module = apply_to_model(self.model, self.fast_path)
            torch.set_rng_state(rng[0])  # the eager retry draws the same dropout masks
            if rng[1] is not None:
                torch.cuda.set_rng_state(rng[1], x.device)
            return self._step(self.model, x, y, compiled=False)

    def _step(self, module: nn.Module, x, y, compiled: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if compiled and self.fast_path.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with compiled_blocks(self.model, compiled), self.fast_path.autocast():
            logits = module(x)
            loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # a compiled backward may compile on its first call: still inside the caller's try
        self.optimizer.step()
        return loss.detach(), logits.detach()


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
