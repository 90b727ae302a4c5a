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
``compile`` (default off)
    ``torch.compile(model)`` for the training forward/backward. Checkpoints
    are written from the uncompiled module (same parameters, same names);
    evaluation uses the uncompiled module too (no recompiles for eval mode
    and other batch sizes).
``cuda_graphs`` (default off)
    CUDA graphs through ``torch.compile(mode="reduce-overhead")``; applies
    only together with ``compile``.

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

# Requested defaults (the config's train.fast_path defaults are the same; see config.DEFAULTS).
DEFAULT_FAST_PATH = {"bf16_autocast": True, "fused_optimizer": True, "compile": False, "cuda_graphs": False}


@dataclass
class FastPath:
    """Which fast-path parts are active (not merely requested) on one device."""

    bf16_autocast: bool = False
    fused_optimizer: bool = False
    compile: bool = False
    cuda_graphs: bool = False

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

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
    want = {**DEFAULT_FAST_PATH, **(requested or {})}
    unknown = set(want) - set(DEFAULT_FAST_PATH)
    if unknown:
        raise ValueError(f"unknown fast_path part(s) {sorted(unknown)}; valid: {', '.join(DEFAULT_FAST_PATH)}")
    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return FastPath()
    return FastPath(
        bf16_autocast=bool(want["bf16_autocast"]) and torch.cuda.is_bf16_supported(),
        fused_optimizer=bool(want["fused_optimizer"]),
        compile=bool(want["compile"]),
        cuda_graphs=bool(want["compile"]) and bool(want["cuda_graphs"]),
    )


def compile_model(model: nn.Module, fast_path: FastPath) -> nn.Module:
    """``torch.compile(model)`` (mode reduce-overhead with CUDA graphs) when active, else ``model`` itself."""
    if not fast_path.compile:
        return model
    return torch.compile(model, mode="reduce-overhead" if fast_path.cuda_graphs else None)


class TrainStep:
    """One optimisation step on a batch: forward + loss (under autocast when active), zero_grad, backward, step.

    Returns the detached loss (fp32 scalar) and logits; no host synchronisation.
    The learning-rate scheduler is the caller's (the benchmark has none).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, fast_path: FastPath):
        self.model = model  # the uncompiled module: state_dict, train()/eval()
        self.optimizer = optimizer
        self.fast_path = fast_path
        self.forward_module = compile_model(model, fast_path)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fast_path.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with self.fast_path.autocast():
            logits = self.forward_module(x)
            loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
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

    ``model`` may be a compiled module (the benchmark compiles an eval-mode copy when ``compile`` is active).
    """

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), fast_path.autocast():
            return model(x)

    return forward
