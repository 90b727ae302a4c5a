import time

import pytest
import yaml

from ssmvit.config import (
    defaults,
    from_settings,
    load,
    model_settings,
    read_yaml,
    resolve,
    schema,
    settings_json,
    subset,
)
from ssmvit.errors import UserError

REPO_CONFIG = "config.yaml"


def test_repo_config_is_the_seed_study():
    cfg = load([REPO_CONFIG])
    assert cfg["study"]["datasets"] == ["organamnist", "dermamnist", "pathmnist"]
    assert cfg["study"]["resolutions"] == [28, 64]
    assert cfg["study"]["models"] == ["vit", "s4d", "resnet18"]  # the seed's two, and the field's baseline
    assert cfg["train"]["batch_size"] == 64 and cfg["train"]["epochs"] == 5
    assert cfg["train"]["weight_decay"] == 0.01 and cfg["train"]["scheduler"] == "cosine"
    assert model_settings(cfg, "s4d", 1)["d_model"] == 128
    assert model_settings(cfg, "s4d", 3)["d_model"] == 256
    assert model_settings(cfg, "vit", 1) == {"patch_size": 4, "embed_dim": 768, "depth": 8, "num_heads": 8,
                                              "mlp_dim": 256, "dropout": 0.1}
    assert cfg["outdir"] == "build/default"  # the default study never writes the committed results


def test_every_default_lives_in_the_schema_or_its_model_file_and_satisfies_it():
    d = defaults()
    assert resolve({}) == resolve(d)  # filling in defaults changes nothing when they are all given
    assert d["train"]["fast_path"]["compile"] is True and d["models"]["s4d"]["ssm_lr"] == 1e-3

    def leaves(node, where=""):
        if node.get("type") == "object" and "properties" in node:
            for k, v in node["properties"].items():
                yield from leaves(v, f"{where}.{k}" if where else k)
        else:
            yield where, node

    for where, node in leaves(schema()):
        assert "default" in node, f"{where} has no default in the schema"


def test_set_values_are_yaml_and_replace_what_they_name():
    cfg = load([], ["train.epochs=1", "study.seeds=[3, 4]", "data.upsample_from={64: 28}"])
    assert cfg["train"]["epochs"] == 1 and cfg["study"]["seeds"] == [3, 4]
    assert cfg["data"]["upsample_from"] == {64: 28}
    # a mapping is replaced, not merged: {} empties it, a new key is accepted
    cfg = load(["config/smoke-synthetic.yaml"], ["data.upsample_from={}"])
    assert cfg["data"]["upsample_from"] == {}
    assert load(["config/smoke-synthetic.yaml"], ["data.upsample_from={128: 28}"])["data"]["upsample_from"] == {128: 28}


def write(tmp_path, obj):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(obj) if not isinstance(obj, str) else obj)
    return p


@pytest.mark.parametrize("obj, needle", [
    ({"trian": {"epochs": 1}}, "unknown config key 'trian'; valid keys here: data, models, outdir, paper, profile, study, train"),
    ({"train": {"epoch": 1}}, "unknown config key 'train.epoch'"),
    ({"study": {"datasets": ["organmnist"]}}, "unknown dataset 'organmnist'; did you mean 'organamnist'?"),
    ({"study": {"datasets": ["chestmnist"]}}, "multi-label"),
    ({"study": {"models": ["mamba"]}}, "unknown model 'mamba'; valid choices: vit, s4d, resnet18"),
    ({"study": {"models": ["resnet"]}}, "unknown model 'resnet'; did you mean 'resnet18'?"),
    ({"study": {"resolutions": [32]}}, "valid choices: 28, 64, 128, 224"),
    ({"study": {"datasets": ["organamnist"], "profile_only": ["organamnist"]}}, "list each dataset once"),
    ({"train": {"epochs": 0}}, "out of range"),
    ({"train": {"batch_size": -4}}, "out of range"),
    ({"train": {"epochs": "five"}}, "wrong type"),
    ({"models": {"vit": {"lr": 0}}}, "out of range"),
    ({"models": {"s4d": {"lr": 5}}}, "out of range"),
    ({"models": {"s4d": {"dropout": float("nan")}}}, "is not a finite number"),
    ({"data": {"upsample_from": {64: 64}}}, "maps 64 to itself"),
    ({"models": {"vit": {"patch_size": 5}}}, "does not divide"),
    ({"__use_yte__": True, "train": {"epochs": 1}}, "YTE templating"),
    ("a: &x [1, 2]\nb: *x\n", "YAML alias '*x'"),
    ("train: [unclosed\n", "not valid YAML at line"),
    ("- 1\n- 2\n", "must be a mapping"),
])
def test_bad_config_is_one_line_error(tmp_path, obj, needle):
    with pytest.raises(UserError) as exc:
        load([write(tmp_path, obj)])
    msg = str(exc.value)
    assert needle in msg
    assert "\n" not in msg


def test_a_yaml_bomb_is_refused_at_once(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    path = write(tmp_path, "train:\n  epochs: 1\nmodels:\n  vit:\n    lr: 0.1\n" + bomb)
    t0 = time.monotonic()
    with pytest.raises(UserError, match="YAML alias"):
        read_yaml(path)
    assert time.monotonic() - t0 < 1.0
    # the same structure built in Python (as Snakemake's own YAML reader would) is refused without expanding it
    a = ["x"] * 9
    for _ in range(8):
        a = [a] * 9
    t0 = time.monotonic()
    with pytest.raises(UserError, match="repeats another node"):
        resolve({"study": {"seeds": a}})
    assert time.monotonic() - t0 < 1.0


def test_config_paths_that_are_not_files_are_one_line(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_yaml(tmp_path / "missing.yaml")
    with pytest.raises(UserError, match="is not a regular file"):
        read_yaml(tmp_path)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("outdir: caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match="is not UTF-8"):
        read_yaml(latin1)


def test_a_job_sees_exactly_the_settings_its_rule_passes():
    cfg = load(["config/smoke-synthetic.yaml"])
    keys = ["data.upsample_from.64", "data.synthetic", "train", "models.s4d"]
    got = from_settings(settings_json(cfg, keys))
    assert got == subset(cfg, keys)
    assert got["data"]["upsample_from"] == {64: 28} and got["train"] == cfg["train"]
    # a resolution that is not upsampled arrives as an empty mapping, not as a default
    assert from_settings(settings_json(cfg, ["data.upsample_from.28"])) == {"data": {"upsample_from": {}}}
    # nothing is filled in: a stage reading a key its rule does not pass fails loudly
    with pytest.raises(KeyError):
        got["study"]
    with pytest.raises(UserError, match="unknown config key 'train.epochz'"):
        from_settings('{"train": {"epochz": 1}}')
