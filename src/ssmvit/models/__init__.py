"""Model registry: a name in the config -> a builder, and what input layout it reads."""

from __future__ import annotations

import torch.nn as nn

from ..catalog import check_choice
from ..errors import UserError
from .s4d import S4DClassifier, S4DKernel, S4DLayer
from .vit import ViT

# 'image': (B, C, H, W); 'sequence': raster-scanned (B, H*W, C).
INPUT_LAYOUT = {"vit": "image", "s4d": "sequence"}


def build_model(name: str, n_channels: int, n_classes: int, image_size: int, **settings) -> nn.Module:
    check_choice("model", name, tuple(INPUT_LAYOUT))
    try:
        if name == "vit":
            return ViT(n_channels, n_classes, image_size, **settings)
        return S4DClassifier(n_channels, n_classes, **settings)
    except (MemoryError, RuntimeError) as exc:  # the allocator's refusal of absurd sizes, as one line
        if isinstance(exc, RuntimeError) and "alloc" not in str(exc).lower():
            raise
        raise UserError(f"models.{name} settings {settings} need more memory than this machine has; "
                        "use smaller widths or fewer layers") from None


def load_weights(model: nn.Module, state: dict, source) -> nn.Module:
    """``model.load_state_dict(state)``, with a one-line error when the weights do not fit the model."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"the weights in {source} do not fit the model its settings build ({first}); "
                        "retrain, or replace the file with one this pipeline wrote") from None
    return model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["ViT", "S4DClassifier", "S4DLayer", "S4DKernel", "build_model", "load_weights", "count_params", "INPUT_LAYOUT"]
