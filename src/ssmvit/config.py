"""The study configuration: defaults live here, the study lives in config.yaml.

A config file only needs the keys it changes; everything else comes from
``DEFAULTS``. Validation runs before anything is written: unknown keys and
bad values stop with one line naming the key and the valid choices.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from .errors import UserError

KNOWN_DATASETS = ("organamnist", "dermamnist", "pathmnist", "bloodmnist")
STUDY_DATASETS = ("organamnist", "dermamnist", "pathmnist")
KNOWN_MODELS = ("vit", "s4d")
KNOWN_RESOLUTIONS = (28, 64, 128, 224)  # the official MedMNIST+ sizes

DEFAULTS: dict[str, Any] = {
    "outdir": ".",
    "data": {
        "local_root": None,
        "mirror_url": None,
        "download_timeout_s": 60.0,
        "download_retries": 3,
        "download_backoff_s": 1.0,  # wait before retry k: backoff * 2**(k-1) seconds, at most 60
        "upsample_from": {},
        "checksums": {},
        "synthetic": False,
    },
    "study": {
        "datasets": list(STUDY_DATASETS),
        "resolutions": [28, 64],
        "models": list(KNOWN_MODELS),
        "seeds": [0],
        "profile_only": [],
    },
    "train": {
        "epochs": 5,
        "batch_size": 64,
        "eval_batch_size": 256,
        "weight_decay": 0.01,
        "scheduler": "cosine",
        "max_train_samples": None,
        "max_eval_samples": None,
        "device": "auto",
        "threads": None,
        # GPU fast path (ssmvit.fastpath); every part applies on CUDA only, a CPU run is plain fp32 eager.
        "fast_path": {"bf16_autocast": True, "fused_optimizer": True, "s4d_chunked_conv": True, "compile": True,
                      "compile_scope": "blocks", "cuda_graphs": False},
    },
    "profile": {
        "batch_sizes": [1, 64, 256, 1024],
        "repeats": 10,
        "warmup": 3,
        "device": "auto",
    },
    "models": {
        # The seed study's ViT: patch 4, embed 768, 8 heads, 8 layers, MLP 256.
        "vit": {"lr": 1.0e-4, "patch_size": 4, "embed_dim": 768, "depth": 8, "num_heads": 8,
                "mlp_dim": 256, "dropout": 0.1},
        # The seed study's S4D: d_model 128 (grayscale) / 256 (RGB), 4 layers, d_state 64.
        # ssm_lr follows the S4 reference: min(lr, 1e-3) for step, A and C.
        "s4d": {"lr": 1.0e-2, "ssm_lr": 1.0e-3, "d_model_grayscale": 128, "d_model_rgb": 256,
                "n_layers": 4, "d_state": 64, "dropout": 0.1},
    },
}


def schema() -> dict:
    """The JSON schema of a config (also used by the Snakefile's validate)."""
    return json.loads(resources.files(__package__).joinpath("config.schema.json").read_text())


def schema_path() -> Path:
    return Path(str(resources.files(__package__).joinpath("config.schema.json")))


def deep_merge(base: dict, update: dict, where: str = "") -> dict:
    """Return ``base`` updated by ``update``; a key missing from ``base`` is an error."""
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        here = f"{where}{key}"
        if key not in out:
            raise UserError(f"unknown config key '{here}'; valid keys here: {', '.join(sorted(map(str, out)))}")
        if isinstance(out[key], dict) and out[key] and isinstance(value, dict):
            out[key] = deep_merge(out[key], value, here + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.epochs=1`` -> (['train', 'epochs'], 1); values are parsed as YAML."""
    if "=" not in text:
        raise UserError(f"override '{text}' is not KEY=VALUE; write e.g. train.epochs=1")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    for text in overrides or ():
        keys, value = parse_override(text)
        nested: dict = value
        for k in reversed(keys):
            nested = {k: nested}
        cfg = deep_merge(cfg, nested)
    return cfg


def validate(cfg: dict) -> dict:
    """Check ``cfg`` against the schema; raise one UserError line on the first problem."""
    import jsonschema

    # YAML gives int keys for upsample_from; the schema speaks JSON (string keys).
    as_json = json.loads(json.dumps(cfg))
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(as_json), key=lambda e: list(e.absolute_path))
    if errors:
        raise UserError(format_schema_error(errors[0]))
    for res, src in cfg["data"]["upsample_from"].items():
        if int(res) == int(src):
            raise UserError(f"data.upsample_from maps {res} to itself; remove that entry to use the official {res}x{res} file")
    for model in cfg["study"]["models"]:
        if model == "vit":
            p = cfg["models"]["vit"]["patch_size"]
            bad = [r for r in cfg["study"]["resolutions"] if r % p]
            if bad:
                raise UserError(f"models.vit.patch_size={p} does not divide resolution(s) {bad}; choose a patch size that divides every resolution")
            if cfg["models"]["vit"]["embed_dim"] % cfg["models"]["vit"]["num_heads"]:
                raise UserError("models.vit.embed_dim must be divisible by models.vit.num_heads")
    return cfg


def format_schema_error(err) -> str:
    where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        key = f"{where}.{extra[0]}" if where != "(top level)" and extra else (extra[0] if extra else where)
        return f"unknown config key '{key}'; valid keys here: {', '.join(allowed)}"
    if err.validator == "enum":
        return f"config value {err.instance!r} at '{where}' is not allowed; valid choices: {', '.join(map(str, err.validator_value))}"
    if err.validator == "type":
        return f"config value {err.instance!r} at '{where}' has the wrong type; expected {err.validator_value}"
    if err.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        return f"config value {err.instance!r} at '{where}' is out of range ({err.validator} {err.validator_value})"
    return f"config value at '{where}' is invalid: {err.message}"


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> dict:
    """Defaults, updated by the YAML file at ``path``, then by KEY=VALUE overrides."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise UserError(f"config file {path} does not exist; pass --config with an existing file")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark else ""
            raise UserError(f"config file {path} is not valid YAML{at}; fix the syntax")
        if not isinstance(loaded, dict):
            raise UserError(f"config file {path} must be a mapping of sections (data, study, train, models)")
        cfg = deep_merge(cfg, loaded)
    cfg = apply_overrides(cfg, overrides)
    return validate(cfg)


def check_choice(kind: str, value, choices) -> None:
    if value not in choices:
        raise UserError(f"unknown {kind} {value!r}; valid choices: {', '.join(map(str, choices))}")


def model_settings(cfg: dict, model: str, n_channels: int) -> dict:
    """The keyword arguments that build ``model`` for data with ``n_channels``."""
    check_choice("model", model, KNOWN_MODELS)
    m = dict(cfg["models"][model])
    m.pop("lr", None)
    if model == "s4d":
        m.pop("ssm_lr", None)
        d_gray, d_rgb = m.pop("d_model_grayscale"), m.pop("d_model_rgb")
        m["d_model"] = d_gray if n_channels == 1 else d_rgb
    return m
