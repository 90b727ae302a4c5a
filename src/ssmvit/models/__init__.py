"""Model registry: a name in the config -> a builder, and what input layout it reads."""

from __future__ import annotations

import torch.nn as nn

from ..catalog import check_choice
from .s4d import S4DClassifier, S4DKernel, S4DLayer
from .vit import ViT

# 'image': (B, C, H, W); 'sequence': raster-scanned (B, H*W, C).
INPUT_LAYOUT = {"vit": "image", "s4d": "sequence"}


def build_model(name: str, n_channels: int, n_classes: int, image_size: int, **settings) -> nn.Module:
    check_choice("model", name, tuple(INPUT_LAYOUT))
    if name == "vit":
        return ViT(n_channels, n_classes, image_size, **settings)
    return S4DClassifier(n_channels, n_classes, **settings)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["ViT", "S4DClassifier", "S4DLayer", "S4DKernel", "build_model", "count_params", "INPUT_LAYOUT"]
