"""The study configuration: one schema with every default, one loader, one validation.

``config.schema.yaml`` (beside this file) holds every key, its type, range and
default. ``resolve`` fills the defaults into a mapping and validates it; the
Snakefile calls it once on the config Snakemake merged (``--configfile``,
stacked, then ``--config``), and ``load`` does the same for a person's
``ssmvit`` command (``--config FILE``, stacked, then ``--set KEY=VALUE``).
Snakemake hands each job the part of the resolved config that job depends
on (``subset``), so a stage sees exactly the values Snakemake saw.
"""

from __future__ import annotations

import copy
import json
import math
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from .catalog import check_dataset
from .errors import UserError

DEFAULT_CONFIG_FILE = "config.yaml"


@cache
def _schema_text() -> str:
    return resources.files(__package__).joinpath("config.schema.yaml").read_text()


@cache
def _schema() -> dict:
    from .models import settings_schema

    tree = yaml.safe_load(_schema_text())
    tree["properties"]["models"]["properties"] = settings_schema()  # each model file's SETTINGS
    return tree


def schema() -> dict:
    """The config's JSON schema, with every registered model's settings under ``models``."""
    return copy.deepcopy(_schema())


def _defaults_of(node: dict):
    if node.get("type") == "object" and "properties" in node:
        return {k: _defaults_of(v) for k, v in node["properties"].items()}
    return copy.deepcopy(node.get("default"))


def defaults() -> dict:
    """Every default of the schema, as one nested config."""
    return _defaults_of(schema())


def known_models() -> tuple[str, ...]:
    from .models import MODELS

    return tuple(MODELS)


# ---------------------------------------------------------------- reading

class _StudyFileLoader(yaml.SafeLoader):
    """safe_load without aliases: an anchor (&a / *a) could expand to gigabytes (a 'YAML bomb')."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise UserError(f"YAML alias '*{event.anchor}' at line {event.start_mark.line + 1}; study files may not "
                            "use anchors and aliases, write the values out")
        return super().compose_node(parent, index)


def read_yaml(path) -> dict:
    """A study file as a mapping; one-line errors for a missing, unreadable or malformed file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"config file {path} does not exist; pass --config with an existing file")
    if not path.is_file():
        raise UserError(f"config file {path} is not a regular file; pass --config with a YAML file")
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_StudyFileLoader)
    except UnicodeDecodeError:
        raise UserError(f"config file {path} is not UTF-8 text; save it as UTF-8 YAML") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"config file {path} is not valid YAML{at}; fix the syntax") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserError(f"config file {path} must be a mapping of sections (data, study, train, models)")
    return loaded


def merge(base: dict, update: dict) -> dict:
    """``base`` updated by ``update`` as Snakemake merges config files: mappings merge, other values replace."""
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_set(text: str) -> tuple[list[str], Any]:
    """``train.epochs=1`` -> (['train', 'epochs'], 1); the value is YAML (``{64: 28}``, ``[0, 1]``)."""
    if "=" not in text:
        raise UserError(f"--set '{text}' is not KEY=VALUE; write e.g. --set train.epochs=1")
    key, raw = text.split("=", 1)
    try:
        value = yaml.load(raw, Loader=_StudyFileLoader)
    except yaml.YAMLError:
        raise UserError(f"--set {key}: value {raw!r} is not valid YAML (plain YAML only, no tags); "
                        "quote it, e.g. --set 'data.upsample_from={64: 28}'") from None
    return [k for k in key.strip().split(".")], value


def apply_set(cfg: dict, text: str) -> dict:
    """Replace the value at KEY (a mapping too: ``--set data.upsample_from={}`` empties it)."""
    keys, value = parse_set(text)
    out = copy.deepcopy(cfg)
    node = out
    for depth, k in enumerate(keys[:-1]):
        if not isinstance(node.get(k, {}), dict):
            raise UserError(f"--set {'.'.join(keys)}: '{'.'.join(keys[:depth + 1])}' is not a section")
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return out


def load(files: Iterable = (DEFAULT_CONFIG_FILE,), sets: Iterable[str] = ()) -> dict:
    """The config a person's command runs with: defaults, then each file in order, then each --set."""
    cfg: dict = {}
    for f in files:
        cfg = merge(cfg, read_yaml(f))
    for text in sets:
        cfg = apply_set(cfg, text)
    return resolve(cfg)


# ---------------------------------------------------------------- validation

def _check_plain(value, where: str, seen: set) -> None:
    """No shared nodes (YAML aliases), no NaN/inf, no templating keys; linear in the unique nodes."""
    if isinstance(value, (dict, list)):
        if id(value) in seen:
            raise UserError(f"config value at '{where or '(top level)'}' repeats another node (a YAML alias); "
                            "study files may not use anchors and aliases, write the values out")
        seen.add(id(value))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            if isinstance(k, str) and k.startswith("__use_yte"):
                raise UserError("study files may not use YTE templating (__use_yte__); write plain YAML")
            _check_plain(v, f"{where}.{k}" if where else str(k), seen)
    elif isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"config value {value} at '{where}' is not a finite number; write a number")


def _as_json_keys(cfg: dict) -> dict:
    """The config as JSON Schema sees it: upsample_from's keys as strings (YAML gives ints)."""
    out = dict(cfg)
    if isinstance(cfg.get("data"), dict) and isinstance(cfg["data"].get("upsample_from"), dict):
        out["data"] = dict(cfg["data"], upsample_from={str(k): v for k, v in cfg["data"]["upsample_from"].items()})
    return out


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


def _check_schema(cfg: dict) -> None:
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(schema()).iter_errors(_as_json_keys(cfg)),
                    key=lambda e: list(e.absolute_path))
    if errors:
        raise UserError(format_schema_error(errors[0]))


def _int_keys(cfg: dict) -> None:
    if "upsample_from" in cfg.get("data", {}):
        cfg["data"]["upsample_from"] = {int(k): int(v) for k, v in cfg["data"]["upsample_from"].items()}


_SCALAR_TYPES = {"integer": int, "number": (int, float), "boolean": bool, "null": type(None)}


def _coerce(value, node: dict):
    """Strings where the schema wants a number, boolean or null, read as YAML scalars.

    Snakemake reads nested ``--config`` values with YAML's base loader, so
    ``--config 'train={epochs: 2}'`` arrives as {'epochs': '2'}; a file's values arrive typed.
    """
    if isinstance(value, dict):
        props, extra = node.get("properties", {}), node.get("additionalProperties")
        return {k: _coerce(v, props.get(k, extra if isinstance(extra, dict) else {})) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce(v, node.get("items", {})) for v in value]
    types = node.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if "enum" in node and not types:
        types = sorted({"integer" if isinstance(e, int) else "string" for e in node["enum"]})
    if isinstance(value, str) and "string" not in types and any(t in _SCALAR_TYPES for t in types):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if any(isinstance(parsed, _SCALAR_TYPES[t]) and not (t != "boolean" and isinstance(parsed, bool))
               for t in types if t in _SCALAR_TYPES):
            return parsed
    return value


def resolve(mapping: dict) -> dict:
    """``mapping`` with every default filled in, validated; one UserError line on the first problem."""
    if not isinstance(mapping, dict):
        raise UserError("a config must be a mapping of sections (data, study, train, models)")
    _check_plain(mapping, "", set())  # aliases first: nothing below may expand a YAML bomb
    cfg = _coerce(merge(defaults(), mapping), schema())
    _check_plain(cfg, "", set())  # again after coercion: --config's '.nan' only becomes a float here
    _check_schema(cfg)
    _int_keys(cfg)
    for res, src in cfg["data"]["upsample_from"].items():
        if res == src:
            raise UserError(f"data.upsample_from maps {res} to itself; remove that entry to use the official {res}x{res} file")
    study = cfg["study"]
    for name in study["datasets"] + study["profile_only"]:
        check_dataset(name)
    if isinstance(cfg["data"]["synthetic"], list):
        for name in cfg["data"]["synthetic"]:
            check_dataset(name)
    both = sorted(set(study["datasets"]) & set(study["profile_only"]))
    if both:
        raise UserError(f"study.profile_only lists {', '.join(both)}, which study.datasets trains; list each dataset once")
    from .models import entry

    for name in study["models"]:
        entry(name).check(cfg["models"][name], study)  # an unknown name: "did you mean"
    return cfg


# ---------------------------------------------------------------- what a job depends on

def _key_in(node: dict, part: str):
    """The key of ``node`` spelled ``part`` (upsample_from's keys are ints), or None."""
    if part in node:
        return part
    if part.isdigit() and int(part) in node:
        return int(part)
    return None


def subset(cfg: dict, keys: Iterable[str]) -> dict:
    """The part of ``cfg`` under the dotted ``keys``. A key absent from ``cfg`` (``data.upsample_from.28``
    when 28 is not upsampled) leaves its parents in place, empty: the job sees that it is absent."""
    out: dict = {}
    for dotted in keys:
        src, dst = cfg, out
        parts = dotted.split(".")
        for depth, part in enumerate(parts):
            key = _key_in(src, part) if isinstance(src, dict) else None
            if key is None:
                break
            if depth == len(parts) - 1:
                dst[key] = copy.deepcopy(src[key])
            else:
                src, dst = src[key], dst.setdefault(key, {})
    return out


def settings_json(cfg: dict, keys: Iterable[str]) -> str:
    """``subset`` as the JSON a job's ``--settings`` receives (sorted: a stable rerun trigger)."""
    return json.dumps(subset(cfg, keys), sort_keys=True, separators=(",", ":"))


def from_settings(text: str) -> dict:
    """The config of a job Snakemake started: exactly the values its ``--settings`` JSON holds.

    They were resolved (defaults, validation) by the Snakefile, so nothing is
    filled in: a stage that reads a key its rule does not pass fails loudly
    instead of silently using a default Snakemake never saw.
    """
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--settings is not valid JSON ({exc.msg}); it is written by the Snakefile") from None
    if not isinstance(cfg, dict):
        raise UserError("--settings must be a JSON object of config sections")
    _check_plain(cfg, "", set())
    _check_schema(cfg)
    _int_keys(cfg)
    return cfg


def model_settings(cfg: dict, model: str, n_channels: int) -> dict:
    """The keyword arguments that build ``model`` for data with ``n_channels`` (its registry entry says how)."""
    from .models import entry

    return entry(model).kwargs(cfg["models"][model], n_channels)
