"""Multiply-accumulates (MACs) of one forward pass, counted three ways, and the seed study's "Mult-Adds".

The seed study reported a "Mult-Adds" column without saying how it was
counted; ``count_mult_adds_torchinfo`` (torchinfo's total, which is not a
MAC count) reproduces its S4D figures exactly. This module gives three
counts that state their method, and the tests prove where they agree and
exactly where they differ:

``count_macs_thop``
    thop's module hooks, the count most papers quote. It sees only leaf
    modules of known types (Linear, Conv, norms); anything done with tensor
    functions inside ``forward`` is invisible to it: the attention matmuls
    inside ``F.scaled_dot_product_attention``, all of S4D's FFT convolution
    and its kernel generation. It also counts every affine LayerNorm as 4
    ops per input element, which none of the other counts do.

``count_macs_flopcounter``
    ``torch.utils.flop_counter.FlopCounterMode`` at the aten level, MACs =
    FLOPs / 2. It counts matmul-type ops only (mm/addmm/bmm/convolution and
    the fused attention kernels), bias excluded, elementwise ops excluded,
    FFTs counted as 0. (It would count a complex matmul as if it were real,
    one complex MAC = 1 instead of 4; S4D's kernel is now generated in real
    arithmetic, so this does not arise with ``models/s4d.py`` as it is.)
    Fused attention is counted on CUDA (flash / memory-efficient kernels are
    in its registry) but *not* on CPU: with torch 2.13 the CPU dispatches to
    ``aten._scaled_dot_product_flash_attention_for_cpu``, which has no flop
    formula and counts 0. So that one number does not depend on the machine,
    this module runs the count with SDPA forced onto its math backend
    (``sdpa_math=True``, the default), where QK^T and AV are plain ``bmm``s
    that are counted on every device.

``count_macs_analytic``
    Derived from the architecture and the config, with a breakdown by part.
    It counts the matmul-type work (as FlopCounterMode does, S4D's kernel
    matmul included) plus the FFT convolution, which every module-level or
    aten-level counter misses (thop misses the kernel matmul too). One cost
    model, stated once:

    * MACs = real FLOPs / 2 everywhere (so a real multiply-add is 1 MAC).
    * Linear / conv: in_features x out_features per output position; the
      bias add is not counted (the MAC convention; FlopCounterMode and thop
      do the same).
    * Attention, per layer: QK^T is T x T x D MACs (heads x T x T x D/heads),
      AV the same; softmax and scaling are elementwise and not counted.
    * A complex FFT of length n costs 5 n log2 n real FLOPs (the radix-2
      count); a real-input ``rfft`` or real-output ``irfft`` of length n
      about half, 2.5 n log2 n FLOPs. For n not a power of two the same
      formula is used with log2 n fractional (a model, not a kernel count).
    * The S4D layer, per layer with H channels, sequence length L and the
      FFT length n the model uses (``models.s4d.fft_size(2L)``, the smallest
      5-smooth number >= 2L: 1600 for L = 784, 8192 for L = 4096; plain 2L
      where the model has no ``fft_size``): ``rfft`` of the input (B, H, n),
      ``rfft`` of the kernel (H, n), a pointwise product of H x (n/2 + 1)
      complex numbers, each a complex multiply = 4 real multiplies + 2 real
      adds = 6 FLOPs = 3 MACs, and ``irfft`` of (B, H, n/2 + 1) back to n.
    * Kernel generation, per layer, with M = d_state/2 complex modes: its
      one matmul, as ``S4DKernel.forward`` computes it (real arithmetic), the
      ``bmm`` of [Re C', -Im C'] (H, 1, 2M) with the powers (H, 2M, L):
      H x 2M x L real MACs, i.e. 2 per complex mode and step (only the real
      part is formed; the complex einsum ``hn,hnl->hl`` it replaces costs
      4). The kernel is generated once per forward pass whatever the batch
      size, so the per-image count at batch 1 holds it once; ``macs_at_batch``
      amortises it. Its elementwise work (the exponents x·l, y·l, the
      products e^{xl}·cos, e^{xl}·sin, the factor 2) is elementwise like the
      rest below, and not counted; nor is the O(H x M) set-up (dt, A, C').
    * Elementwise work is counted nowhere (by thop only in LayerNorm, at 4
      ops per element): LayerNorm, GELU, GLU, softmax, residual and bias
      adds, the D skip, dropout, mean pooling, position-embedding add, and
      the elementwise part of S4D's kernel generation. The spectral product
      of the FFT convolution is counted (above): it is the convolution's own
      multiply-accumulate, not an elementwise side step.

Batch: the S4D kernel and its FFT do not depend on the batch, so "MACs per
sample" is reported at batch 1 with the kernel counted once; ``macs_at_batch``
gives the count of one forward pass at batch B (kernel parts once, the rest
times B). All counts here are for one forward pass (inference); a training
step costs roughly 3x the matmul part.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import math
import warnings

import torch
import torch.nn as nn

from .catalog import check_choice
from .models import INPUT_LAYOUT, S4DClassifier, ViT, build_model

# Parts of the analytic breakdown, in the order they are reported.
PARTS = ("linear_conv", "attention_qk", "attention_av", "fft_signal", "fft_pointwise", "fft_kernel", "kernel_matmul")
# Parts computed once per forward pass whatever the batch size (S4D's kernel and its rfft).
BATCH_INDEPENDENT = ("fft_kernel", "kernel_matmul")


def example_input(model_name: str, n_channels: int, res: int, batch: int = 1, device="cpu",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """A random float input in the layout the model reads: (B, C, H, W) or raster-scanned (B, H*W, C)."""
    check_choice("model", model_name, tuple(INPUT_LAYOUT))
    shape = (batch, n_channels, res, res) if INPUT_LAYOUT[model_name] == "image" else (batch, res * res, n_channels)
    return torch.randn(shape, device=device, generator=generator)


# ----------------------------------------------------------------------------------------- thop
def count_macs_thop(model: nn.Module, example: torch.Tensor) -> int:
    """thop's MAC count of one forward pass on ``example`` (module hooks, eval mode, no grad).

    thop registers ``total_ops``/``total_params`` buffers on *every* module
    but removes them only from the modules it hooked, which would leave them
    in the model's state_dict; so it runs on a deep copy. Its ``[INFO]``
    prints and its import-time deprecation warnings are swallowed.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # thop imports distutils' LooseVersion
        import thop

        clone = copy.deepcopy(model).eval()
        with contextlib.redirect_stdout(io.StringIO()):
            macs, _ = thop.profile(clone, inputs=(example,), verbose=False)
    return int(round(float(macs)))


# ---------------------------------------------------------------------------- FlopCounterMode
def flopcounter_macs_by_op(model: nn.Module, example: torch.Tensor, sdpa_math: bool = True) -> dict[str, int]:
    """FlopCounterMode's count of one eval-mode forward pass, per aten op, as MACs (FLOPs / 2).

    ``sdpa_math=True`` forces ``F.scaled_dot_product_attention`` onto its
    math backend so that QK^T and AV appear as ``bmm`` on every device (the
    fused CPU kernel of torch 2.13 is counted as 0; see the module docstring).
    The math backend computes the same function; only which kernel runs changes.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()  # dropout off: the count is of the inference forward pass
    try:
        backend = sdpa_kernel(SDPBackend.MATH) if sdpa_math else contextlib.nullcontext()
        with torch.no_grad(), backend, FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    flops = counter.get_flop_counts().get("Global", {})
    return {str(op).split(".")[-1]: int(n) // 2 for op, n in flops.items()}


def count_macs_flopcounter(model: nn.Module, example: torch.Tensor, sdpa_math: bool = True) -> int:
    """Total of ``flopcounter_macs_by_op``: matmul-type MACs of one forward pass, FFTs as 0."""
    return sum(flopcounter_macs_by_op(model, example, sdpa_math).values())


# ------------------------------------------------------------------------------------ analytic
def _with_defaults(cls: type, settings: dict) -> dict:
    """The model's constructor defaults updated by ``settings`` (keeps this in step with the model code)."""
    params = inspect.signature(cls.__init__).parameters
    merged = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    merged.update(settings or {})
    return merged


def s4d_fft_length(length: int) -> int:
    """The FFT length S4D uses for a sequence of ``length``: the model's own choice, read from its code."""
    from .models import s4d

    # Older versions of the layer used 2L itself; ``fft_size`` rounds 2L up to a fast (5-smooth) length.
    return s4d.fft_size(2 * length) if hasattr(s4d, "fft_size") else 2 * length


def rfft_flops(n: int) -> float:
    """Real FLOPs of one real-input rfft (or real-output irfft) of length n: half of 5 n log2 n."""
    return 2.5 * n * math.log2(n)


def count_macs_analytic(model_name: str, n_channels: int, n_classes: int, res: int, settings: dict) -> dict:
    """MACs of one forward pass at batch 1 from the architecture, by part (see the module docstring).

    Returns a dict of ints with every key of ``PARTS`` (0 where a model has
    no such part) and ``total``, their sum. FFT parts are rounded to whole MACs.
    ViT and S4D have their formulas here; any other registered model (whose
    work is all linear layers and convolutions, e.g. ResNet-18) is counted by
    FlopCounterMode on the built model, which under this cost model is the
    same count: its matmuls and convolutions, bias and elementwise work excluded.
    """
    check_choice("model", model_name, tuple(INPUT_LAYOUT))
    out = dict.fromkeys(PARTS, 0)
    if model_name == "vit":
        s = _with_defaults(ViT, settings)
        p, d, depth, mlp = int(s["patch_size"]), int(s["embed_dim"]), int(s["depth"]), int(s["mlp_dim"])
        n_patches = (res // p) ** 2
        t = n_patches + 1  # tokens, with CLS
        patch_embed = n_channels * p * p * d * n_patches  # strided conv = one matmul per patch
        per_block = t * (d * 3 * d + d * d + d * mlp + mlp * d)  # qkv, proj, MLP up and down
        head = d * n_classes  # the head reads the CLS token only
        out["linear_conv"] = patch_embed + depth * per_block + head
        out["attention_qk"] = depth * t * t * d
        out["attention_av"] = depth * t * t * d
    elif model_name == "s4d":
        s = _with_defaults(S4DClassifier, settings)
        h, layers, n_state = int(s["d_model"]), int(s["n_layers"]), int(s["d_state"])
        length = res * res
        n_fft = s4d_fft_length(length)
        modes = n_state // 2  # complex modes (conjugate pairs folded into 2·Re)
        encoder = n_channels * h * length
        output_linear = 2 * h * h * length  # 1x1 Conv1d H -> 2H, before the GLU
        decoder = h * n_classes  # after mean pooling
        out["linear_conv"] = encoder + layers * output_linear + decoder
        out["fft_signal"] = round(layers * h * 2 * rfft_flops(n_fft) / 2)  # rfft(u) + irfft(product)
        out["fft_pointwise"] = layers * h * (n_fft // 2 + 1) * 6 // 2  # complex multiply = 6 FLOPs
        out["fft_kernel"] = round(layers * h * rfft_flops(n_fft) / 2)  # rfft(k), once per forward
        out["kernel_matmul"] = layers * h * 2 * modes * length  # bmm (H,1,2M) x (H,2M,L); its elementwise work not
    else:
        model = build_model(model_name, n_channels, n_classes, res, **(settings or {}))
        out["linear_conv"] = count_macs_flopcounter(model, example_input(model_name, n_channels, res))
    out["total"] = sum(out[k] for k in PARTS)
    return out


def macs_at_batch(breakdown: dict, batch: int) -> int:
    """MACs of one forward pass at batch ``batch``: S4D's kernel parts once, everything else x batch."""
    return sum(breakdown[k] * (1 if k in BATCH_INDEPENDENT else int(batch)) for k in PARTS)


# ------------------------------------------------------------------------ the seed's "Mult-Adds"
def count_mult_adds_torchinfo(model: nn.Module, example: torch.Tensor) -> int:
    """torchinfo's "Total mult-adds" of one eval-mode forward pass on ``example``: the seed study's column. NOT a MAC count.

    torchinfo (``LayerInfo.calculate_macs``) sums over executed leaf modules,
    per parameter named exactly ``weight`` or ``bias``: for a module whose
    class name contains "Conv", numel x prod(output[:1] + output[2:]);
    otherwise numel x output.shape[0]. So an ``nn.Linear`` applied to a
    (B, L, D) sequence is charged B x params, not B x L x params, bias adds
    are charged as MACs, and parameters with other names (S4D's ``C``,
    ``log_dt``) and everything done with tensor functions (attention
    matmuls, FFTs) are charged nothing. For S4D this lands on the seed's
    numbers exactly (tests/test_macs.py). Runs on a deep copy, as thop does.
    """
    import torchinfo

    clone = copy.deepcopy(model).eval()
    stats = torchinfo.summary(clone, input_data=example, verbose=0, mode="eval", device=example.device)
    return int(stats.total_mult_adds)
