"""Model registry: every module in this package that names a model is one.

To add a model, add one file here and one entry to the study's config
(``models.<name>: {...}`` and the name in ``study.models``). The file defines:

  NAME            the name in the config (``study.models``, ``models.<NAME>``)
  LABEL           how tables and figures name it
  INPUT_LAYOUT    "image": (B, C, H, W) floats; "sequence": raster-scanned (B, H*W, C)
  DESCRIPTION     one line for the config schema and the paper
  SETTINGS        JSON-schema properties of ``models.<NAME>`` with their defaults (the
                  one place they live); ``lr`` is required, as training reads it
  build(n_channels, n_classes, image_size, **kwargs) -> nn.Module

and may define ORDER (its place in tables and figures; default after the others),
``model_kwargs(settings, n_channels)`` (the constructor's keywords; default:
the settings without ``lr``), and ``check(settings, study)`` (raise
``UserError`` for settings that cannot build the model for the study).
Everything else (training, evaluation, profiling, MAC counts, figures,
tables) works from this entry.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

import torch.nn as nn

from ..catalog import check_choice
from ..errors import UserError
from .s4d import S4DClassifier, S4DKernel, S4DLayer
from .vit import ViT

LAYOUTS = ("image", "sequence")
REQUIRED = ("NAME", "LABEL", "INPUT_LAYOUT", "DESCRIPTION", "SETTINGS", "build")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    label: str
    order: int
    input_layout: str
    description: str
    settings: dict
    build: Callable[..., nn.Module]
    module: ModuleType

    def kwargs(self, settings: dict, n_channels: int) -> dict:
        if hasattr(self.module, "model_kwargs"):
            return self.module.model_kwargs(dict(settings), n_channels)
        return {k: v for k, v in settings.items() if k != "lr"}

    def check(self, settings: dict, study: dict) -> None:
        if hasattr(self.module, "check"):
            self.module.check(settings, study)


def _discover() -> dict[str, ModelEntry]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if not hasattr(module, "NAME"):
            continue  # a helper module, not a model
        missing = [k for k in REQUIRED if not hasattr(module, k)]
        if missing or "lr" not in module.SETTINGS or module.INPUT_LAYOUT not in LAYOUTS:
            raise UserError(f"ssmvit.models.{info.name} is not a complete model entry: it needs "
                            f"{', '.join(REQUIRED)}, an 'lr' setting and INPUT_LAYOUT in {LAYOUTS}"
                            + (f" (missing: {', '.join(missing)})" if missing else "")
                            + "; see the docstring of ssmvit/models/__init__.py")
        found.append(ModelEntry(module.NAME, module.LABEL, getattr(module, "ORDER", 1000), module.INPUT_LAYOUT,
                                module.DESCRIPTION, module.SETTINGS, module.build, module))
    found.sort(key=lambda e: (e.order, e.name))
    return {e.name: e for e in found}


MODELS: dict[str, ModelEntry] = _discover()
INPUT_LAYOUT = {name: e.input_layout for name, e in MODELS.items()}


def entry(name: str) -> ModelEntry:
    check_choice("model", name, tuple(MODELS))
    return MODELS[name]


def model_label(name: str) -> str:
    """How tables and figures name a model: its LABEL, else the name as given."""
    return MODELS[name].label if name in MODELS else str(name)


def model_sort_key(name: str):
    """Registry order (ORDER, then name); unknown names after the others."""
    names = list(MODELS)
    return (names.index(name) if name in names else len(names), str(name))


def settings_schema() -> dict:
    """The JSON schema of the config's ``models`` section: one object per registered model."""
    return {name: {"type": "object", "additionalProperties": False, "default": {}, "description": e.description,
                   "properties": e.settings} for name, e in MODELS.items()}


def build_model(name: str, n_channels: int, n_classes: int, image_size: int, **settings) -> nn.Module:
    e = entry(name)
    try:
        return e.build(n_channels, n_classes, image_size, **settings)
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


__all__ = ["MODELS", "ModelEntry", "entry", "model_label", "model_sort_key", "settings_schema", "ViT", "S4DClassifier",
           "S4DLayer", "S4DKernel", "build_model", "load_weights", "count_params", "INPUT_LAYOUT"]
