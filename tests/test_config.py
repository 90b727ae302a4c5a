import pytest
import yaml

from ssmvit.config import DEFAULTS, load_config, model_settings, schema
from ssmvit.errors import UserError

REPO_CONFIG = "config.yaml"


def test_repo_config_is_the_seed_study():
    cfg = load_config(REPO_CONFIG)
    assert cfg["study"]["datasets"] == ["organamnist", "dermamnist", "pathmnist"]
    assert cfg["study"]["resolutions"] == [28, 64]
    assert cfg["study"]["models"] == ["vit", "s4d"]
    assert cfg["train"]["batch_size"] == 64 and cfg["train"]["epochs"] == 5
    assert cfg["train"]["weight_decay"] == 0.01 and cfg["train"]["scheduler"] == "cosine"
    assert model_settings(cfg, "s4d", 1)["d_model"] == 128
    assert model_settings(cfg, "s4d", 3)["d_model"] == 256
    assert model_settings(cfg, "vit", 1) == {"patch_size": 4, "embed_dim": 768, "depth": 8, "num_heads": 8,
                                              "mlp_dim": 256, "dropout": 0.1}


def test_overrides_are_parsed_as_yaml():
    cfg = load_config(None, ["train.epochs=1", "study.seeds=[3, 4]", "data.upsample_from={64: 28}"])
    assert cfg["train"]["epochs"] == 1 and cfg["study"]["seeds"] == [3, 4]
    assert cfg["data"]["upsample_from"] == {64: 28}


def write(tmp_path, obj):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(obj))
    return p


@pytest.mark.parametrize("obj, needle", [
    ({"trian": {"epochs": 1}}, "unknown config key 'trian'; valid keys here: data, models, outdir, profile, study, train"),
    ({"train": {"epoch": 1}}, "unknown config key 'train.epoch'"),
    ({"study": {"datasets": ["chestmnist"]}}, "valid choices: organamnist, dermamnist, pathmnist, bloodmnist"),
    ({"study": {"models": ["resnet"]}}, "valid choices: vit, s4d"),
    ({"study": {"resolutions": [32]}}, "valid choices: 28, 64, 128, 224"),
    ({"train": {"epochs": 0}}, "out of range"),
    ({"train": {"batch_size": -4}}, "out of range"),
    ({"train": {"epochs": "five"}}, "wrong type"),
    ({"models": {"vit": {"lr": 0}}}, "out of range"),
    ({"models": {"s4d": {"lr": 5}}}, "out of range"),
    ({"data": {"upsample_from": {64: 64}}}, "maps 64 to itself"),
    ({"models": {"vit": {"patch_size": 5}}}, "does not divide"),
])
def test_bad_config_is_one_line_error(tmp_path, obj, needle):
    with pytest.raises(UserError) as exc:
        load_config(write(tmp_path, obj))
    msg = str(exc.value)
    assert needle in msg
    assert "\n" not in msg


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="not KEY=VALUE"):
        load_config(None, ["train.epochs"])
    with pytest.raises(UserError, match="unknown config key 'train.nope'"):
        load_config(None, ["train.nope=1"])
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)


def test_defaults_satisfy_schema_and_schema_covers_defaults():
    s = schema()
    for section, values in DEFAULTS.items():
        if not isinstance(values, dict):
            assert section in s["properties"]
            continue
        assert section in s["properties"]
        for key in values:
            assert key in s["properties"][section]["properties"], f"{section}.{key} missing from schema"
