"""Profiling on CPU with tiny models: fields, CPU memory semantics, OOM handling, the stage script."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import yaml

from conftest import REPO, run_ssmvit
from ssmvit import macs, profiling
from ssmvit.config import resolve
from ssmvit.models import count_params
from ssmvit.profiling import OOM, VRAM_NOTE_CPU, is_oom, profile_model, profile_to_row
from ssmvit.tables import EFFICIENCY, oom_cells

TINY = {
    "vit": {"lr": 1e-3, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 4, "mlp_dim": 64, "dropout": 0.1},
    "s4d": {"lr": 1e-2, "ssm_lr": 1e-3, "d_model_grayscale": 16, "d_model_rgb": 24, "n_layers": 2, "d_state": 8,
            "dropout": 0.1},
}
FAST = dict(device="cpu", batch_sizes=(1, 2), repeats=3, warmup=1)
TORCH_COMPILE = torch.compile


@pytest.fixture(scope="module")
def cfg():
    return resolve({"models": copy.deepcopy(TINY), "train": {"batch_size": 4}})


@pytest.fixture(scope="module")
def profiles(cfg):
    return {name: profile_model(cfg, "organamnist", 28, name, **FAST) for name in ("vit", "s4d")}


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@pytest.mark.parametrize("name", ["vit", "s4d"])
def test_profile_has_every_required_field(profiles, name):
    p = profiles[name]
    assert json.loads(json.dumps(p, allow_nan=False)) == p  # JSON-able as it is
    row = profile_to_row(p)
    assert list(row)[:len(EFFICIENCY)] == EFFICIENCY
    assert (row["dataset"], row["resolution"], row["model"], row["n_channels"], row["n_classes"]) == \
        ("organamnist", 28, name, 1, 11)
    for col in ("params", "macs_thop", "macs_flopcounter", "macs_analytic", "static_mb", "train_samples_per_s_fp32",
                "infer_samples_per_s_bs1", "latency_bs1_ms", "peak_rss_mb"):
        assert is_number(row[col]) and row[col] > 0, col
    assert row["train_batch_size"] == 4 and row["device_type"] == "cpu" and row["device_name"]
    # Batch sizes not asked for are "not measured": None, not 0.
    assert row["infer_samples_per_s_bs64"] is None and row["infer_samples_per_s_bs1024"] is None
    assert is_number(row["infer_samples_per_s_bs2"])
    assert "random inputs" in row["data_note"] and "shapes only" in row["data_note"]
    env = p["environment"]
    for key in ("torch", "hostname", "date_utc", "cpu_model", "python"):
        assert env[key], key
    assert env["gpu_driver"] is None and env["gpu_clocks_mhz"] is None and env["cuda"] == torch.version.cuda


@pytest.mark.parametrize("name", ["vit", "s4d"])
def test_counts_match_the_macs_module(profiles, name, cfg):
    p = profiles[name]
    from ssmvit.config import model_settings
    from ssmvit.models import build_model

    settings = model_settings(cfg, name, 1)
    model = build_model(name, 1, 11, 28, **settings)
    x = macs.example_input(name, 1, 28)
    assert p["params"] == count_params(model)
    assert p["macs"]["thop"] == macs.count_macs_thop(model, x)
    assert p["macs"]["flopcounter"] == macs.count_macs_flopcounter(model, x)
    assert p["macs"]["analytic_breakdown"] == macs.count_macs_analytic(name, 1, 11, 28, settings)
    assert p["macs"]["analytic"] == p["macs"]["analytic_breakdown"]["total"]


def test_vram_fields_are_none_on_cpu_with_the_note(profiles):
    for p in profiles.values():
        row = profile_to_row(p)
        for col in ("train_peak_allocated_mb", "train_peak_reserved_mb", "infer_peak_allocated_mb_bs64",
                    "infer_peak_allocated_mb_bs1", "train_peak_allocated_mb_trained"):
            assert row[col] is None, col  # not 0: nothing was measured
        assert row["vram_note"] == VRAM_NOTE_CPU == "not applicable on CPU"
        fp32 = p["train"]["fp32"]
        assert fp32["peak_allocated_mb"] is None and fp32["peak_reserved_mb"] is None
        assert fp32["vram_note"] == VRAM_NOTE_CPU
        assert p["inference"]["results"]["1"]["vram_note"] == VRAM_NOTE_CPU
        # no fast-path part applies on a CPU: as trained is the fp32 step, said so and not measured twice
        assert p["train"]["trained"] == fp32 and "no fast-path part applies on cpu" in p["train"]["trained_note"]
        assert p["inference"]["trained_results"] == p["inference"]["results"]
        assert row["train_samples_per_s_trained"] == row["train_samples_per_s_fp32"] > 0
        assert row["trained_fast_path"] == "fp32 eager"
        assert fp32["peak_rss_mb"] >= fp32["rss_before_mb"] > 0  # the host's memory is measured instead


def test_phase_seconds_say_where_a_profile_job_spends_its_time(profiles):
    for p in profiles.values():
        phases = p["phase_seconds"]
        # on a CPU the as-trained regime is the fp32 one (not measured twice), so it has no phases of its own
        assert list(phases) == ["macs", "fp32_train", "fp32_inference"]
        assert all(v > 0 for v in phases.values())
        assert sum(phases.values()) <= p["seconds"] + 1e-3  # laps of one clock, inside the profile's own time
        fp32_train = p["train"]["fp32"]
        assert phases["fp32_train"] >= sum(fp32_train["times_ms"]) / 1e3  # the timed repeats are inside their phase


def test_row_cells_of_oom_and_failed_phases(profiles):
    p = copy.deepcopy(profiles["vit"])
    p["train"]["trained"] = {"status": profiling.FAILED, "error": "RuntimeError: Unsupported dtype BFloat16"}
    p["train"]["trained_note"] = "as trained failed: RuntimeError: Unsupported dtype BFloat16"
    p["inference"]["results"]["2"] = {"status": OOM, "error": "OutOfMemoryError: (made up)"}
    row = profile_to_row(p)
    assert row["train_samples_per_s_trained"] is None and "Unsupported dtype" in row["trained_note"]
    assert row["train_samples_per_s_fp32"] > 0  # the seed regime's numbers stay
    # out of memory: the numeric cells stay empty and the row's oom cell names them
    assert row["infer_samples_per_s_bs2"] is None and row["infer_peak_rss_mb_bs2"] is None
    assert {"infer_samples_per_s_bs2", "infer_peak_rss_mb_bs2"} <= oom_cells(row)
    assert row["infer_peak_allocated_mb_bs2"] is None  # VRAM on CPU: not applicable, even for an OOM cell
    assert "infer_peak_allocated_mb_bs2" not in oom_cells(row) and "train_samples_per_s_trained" not in oom_cells(row)
    assert OOM not in [v for k, v in row.items() if k != "oom"]


def test_timing_spread_and_static_memory(profiles):
    p = profiles["s4d"]
    fp32 = p["train"]["fp32"]
    assert fp32["repeats"] == len(fp32["times_ms"]) == 3
    assert fp32["samples_per_s_min"] <= fp32["samples_per_s_q25"] <= fp32["samples_per_s_median"] \
        <= fp32["samples_per_s_q75"] <= fp32["samples_per_s_max"]
    bs1 = p["inference"]["results"]["1"]
    assert p["inference"]["latency_bs1_ms"] == pytest.approx(bs1["seconds_median"] * 1e3)
    # Static = fp32 weights + AdamW state: exp_avg and exp_avg_sq per weight, one float32 step per tensor.
    n_tensors = len(list(profiling.build_model("s4d", 1, 11, 28, d_model=16, n_layers=2, d_state=8).parameters()))
    static = p["train"]["static"]
    assert static["weights_mb"] * profiling.MIB == 4 * p["params"]
    assert static["optimizer_state_mb"] * profiling.MIB == 2 * 4 * p["params"] + 4 * n_tensors
    assert static["static_mb"] == pytest.approx(static["weights_mb"] + static["optimizer_state_mb"])


def test_config_profile_section_supplies_the_defaults(cfg):
    c = copy.deepcopy(cfg)
    c["profile"].update({"batch_sizes": [2], "repeats": 2, "warmup": 0, "device": "cpu"})
    p = profile_model(resolve(c), "dermamnist", 28, "vit", train_batch_size=2)
    assert p["inference"]["batch_sizes"] == [2] and p["method"]["repeats"] == 2 and p["method"]["warmup"] == 0
    assert p["n_channels"] == 3 and p["n_classes"] == 7 and p["train"]["batch_size"] == 2
    assert p["inference"]["latency_bs1_ms"] is None  # batch 1 not profiled


def _fault_injecting_build(monkeypatch, fail_at: int, exc_factory):
    """Make profiling's models raise ``exc_factory()`` on any forward pass at batch ``fail_at`` (fault injection)."""
    real = profiling.build_model

    def build(*args, **kwargs):
        model = real(*args, **kwargs)
        forward = model.forward

        def faulty(x):
            if x.shape[0] == fail_at:
                raise exc_factory()
            return forward(x)

        model.forward = faulty
        return model

    monkeypatch.setattr(profiling, "build_model", build)


@pytest.mark.parametrize("exc_factory", [
    lambda: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)"),
    lambda: RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 8589934592 bytes (injected)"),
], ids=["cuda-oom", "cpu-allocator"])
def test_oom_is_recorded_and_later_batch_sizes_still_run(cfg, monkeypatch, exc_factory):
    _fault_injecting_build(monkeypatch, 3, exc_factory)
    p = profile_model(cfg, "organamnist", 28, "s4d", device="cpu", batch_sizes=(1, 3, 2), repeats=2, warmup=1,
                      train_batch_size=3)
    results = p["inference"]["results"]
    assert results["3"]["status"] == OOM and "injected" in results["3"]["error"]
    assert is_number(results["1"]["samples_per_s_median"]) and is_number(results["2"]["samples_per_s_median"])
    assert p["train"]["fp32"]["status"] == OOM
    row = profile_to_row(p)
    assert row["infer_samples_per_s_bs3"] is None and row["train_samples_per_s_fp32"] is None
    assert {"infer_samples_per_s_bs3", "train_samples_per_s_fp32"} <= oom_cells(row)
    assert row["train_peak_allocated_mb"] is None  # VRAM stays "not applicable" on CPU, OOM or not
    assert is_number(row["infer_samples_per_s_bs2"]) and is_number(row["latency_bs1_ms"])
    json.dumps(p, allow_nan=False)


def test_other_errors_are_not_taken_for_oom(cfg, monkeypatch):
    assert is_oom(torch.cuda.OutOfMemoryError("x")) and is_oom(RuntimeError("CUDA out of memory."))
    assert not is_oom(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_oom(ValueError("out of memory"))  # only RuntimeErrors come from allocators
    _fault_injecting_build(monkeypatch, 2, lambda: RuntimeError("shapes cannot be multiplied (injected bug)"))
    with pytest.raises(RuntimeError, match="injected bug"):
        profile_model(cfg, "organamnist", 28, "vit", device="cpu", batch_sizes=(1, 2), repeats=1, warmup=0,
                      train_batch_size=1)


def test_memory_cap_counts_as_oom(cfg):
    # No process fits in 1 MiB of RSS: with this cap every phase is recorded as OOM, and profiling finishes.
    p = profile_model(cfg, "organamnist", 28, "vit", device="cpu", batch_sizes=(1, 2), repeats=1, warmup=1,
                      train_batch_size=2, memory_cap_mb=1)
    assert p["train"]["fp32"]["status"] == OOM and "memory cap" in p["train"]["fp32"]["error"]
    assert all(r["status"] == OOM for r in p["inference"]["results"].values())
    assert p["method"]["memory_cap_mb"] == 1


def test_script_measures_each_input_shape_once_and_writes_one_file_per_dataset(tmp_path):
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump({"models": TINY, "train": {"batch_size": 4}}))
    out = tmp_path / "prof" / "28_s4d"
    r = run_ssmvit("profile", "--config", cfg_file, "--dataset", "organamnist", "bloodmnist", "dermamnist",
                   "--res", 28, "--model", "s4d", "--batch-sizes", "1,2", "--repeats", 1, "--warmup", 0,
                   "--device", "cpu", "--out-dir", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(x.name for x in out.iterdir()) == ["bloodmnist.json", "dermamnist.json", "organamnist.json"]
    assert sorted(x.name for x in out.parent.iterdir()) == ["28_s4d"]  # written atomically: no temp folder left
    p = {d: json.loads((out / f"{d}.json").read_text()) for d in ("organamnist", "bloodmnist", "dermamnist")}
    assert set(EFFICIENCY) <= set(profile_to_row(p["dermamnist"]))
    assert p["organamnist"]["inference"]["batch_sizes"] == [1, 2] and p["organamnist"]["method"]["repeats"] == 1
    # two shapes (1 and 3 channels), so two measurements: DermaMNIST shares BloodMNIST's timings, not its counts
    assert p["dermamnist"]["timed_with"] == {"dataset": "bloodmnist", "n_classes": 8,
                                             "shared_by": ["bloodmnist", "dermamnist"]}
    assert p["dermamnist"]["train"] == p["bloodmnist"]["train"] != p["organamnist"]["train"]
    assert p["dermamnist"]["seconds"] == 0 < p["bloodmnist"]["seconds"]
    assert p["dermamnist"]["phase_seconds"] is None and p["bloodmnist"]["phase_seconds"]["macs"] > 0
    assert (p["dermamnist"]["n_classes"], p["bloodmnist"]["n_classes"]) == (7, 8)
    assert p["dermamnist"]["params"] < p["bloodmnist"]["params"]  # a smaller head, counted for its own classes
    assert p["organamnist"]["timed_with"]["dataset"] == "organamnist"
    assert "timed with bloodmnist" in r.stdout
    # profiling one dataset again rewrites its file and leaves the others' alone
    (out / "pathmnist.json").write_text("{}")
    r = run_ssmvit("profile", "--config", cfg_file, "--dataset", "organamnist", "--res", 28, "--model", "s4d",
                   "--batch-sizes", "1", "--repeats", 1, "--warmup", 0, "--device", "cpu", "--out-dir", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(x.name for x in out.iterdir()) == ["bloodmnist.json", "dermamnist.json", "organamnist.json",
                                                     "pathmnist.json"]
    assert json.loads((out / "organamnist.json").read_text())["inference"]["batch_sizes"] == [1]


def test_script_batch_sizes_argument():
    from ssmvit.cli import _batch_sizes
    from ssmvit.errors import UserError

    assert _batch_sizes("1,64, 256") == [1, 64, 256]
    for bad in ("0,2", "1,x", ""):
        with pytest.raises(UserError, match="--batch-sizes"):
            _batch_sizes(bad)


def test_a_profile_of_an_older_format_is_refused_with_the_fix(tmp_path):
    import json

    from ssmvit.aggregate import efficiency_table
    from ssmvit.errors import UserError

    old = json.loads((REPO / "results/profile/28_s4d/organamnist.json").read_text())
    old["format"] = 2  # as profiles were written before the as-trained regime
    path = tmp_path / "organamnist_28_s4d.json"
    path.write_text(json.dumps(old))
    with pytest.raises(UserError, match=r"older ssmvit \(profile format 2, this one reads 3.*rerun its profile job"):
        efficiency_table([path])
    assert len(efficiency_table([REPO / "results/profile/28_s4d/organamnist.json"])) == 1  # the committed ones read


def test_as_trained_numbers_of_profiles_before_fresh_compiles_and_static_shapes_get_their_caveats():
    """A profile job timed its input shapes one after another in one process; before fastpath.fresh_compiles the
    later shapes' compiles could pass dynamo's recompile limit and run eager. Such profiles (no
    train.trained_compiles) are marked when they compiled and were not their job's first shape. Before static shapes
    (train.trained_compiles not STATIC_COMPILES) every compiled profile timed its inference above batch 1 on a graph
    for any batch size, and says so."""
    from ssmvit.profiling import DYNAMIC_CAVEAT, FRESH_COMPILES, STATIC_COMPILES, TRAINED_CAVEAT, trained_caveats
    from ssmvit.tables import CAVEAT_SEPARATOR

    def prof(res, model, started_at, compiled=True, compiles=None, device="NVIDIA H200"):
        train = {"trained_fast_path": {"compile": compiled}}
        if compiles:
            train["trained_compiles"] = compiles
        return {"resolution": res, "model": model, "started_at": started_at, "train": train,
                "environment": {"device_name": device}}

    both = TRAINED_CAVEAT + CAVEAT_SEPARATOR + DYNAMIC_CAVEAT
    # the gray shape first, then the RGB shape and a dataset sharing its timings; another job at 64
    old = [prof(28, "s4d", 10.0), prof(28, "s4d", 50.0), prof(28, "s4d", 50.0), prof(64, "s4d", 90.0),
           prof(64, "s4d", 130.0)]
    assert trained_caveats(old) == [DYNAMIC_CAVEAT, both, both, DYNAMIC_CAVEAT, both]
    fresh = [prof(28, "s4d", 10.0, compiles=FRESH_COMPILES), prof(28, "s4d", 50.0, compiles=FRESH_COMPILES)]
    assert trained_caveats(fresh) == [DYNAMIC_CAVEAT, DYNAMIC_CAVEAT]
    static = [prof(28, "s4d", 10.0, compiles=STATIC_COMPILES), prof(28, "s4d", 50.0, compiles=STATIC_COMPILES)]
    assert trained_caveats(static) == [None, None]
    assert trained_caveats([prof(28, "s4d", 10.0, False), prof(28, "s4d", 50.0, False)]) == [None, None]
    # a shape re-profiled later with static compiles does not clear the mark of the stale one it followed
    assert trained_caveats([prof(28, "s4d", 90.0, compiles=STATIC_COMPILES), prof(28, "s4d", 10.0),
                            prof(28, "s4d", 50.0)]) == [None, DYNAMIC_CAVEAT, both]
    # a job on another device is another job
    assert trained_caveats([prof(28, "s4d", 10.0, device="cpu"), prof(28, "s4d", 50.0)]) == [DYNAMIC_CAVEAT] * 2


def test_each_batch_size_compiles_its_static_graphs_within_the_profiles_recompile_budget(cfg, monkeypatch):
    """With static shapes a profile's as-trained phase compiles a graph for the step and one per batch size, and S4D
    without bf16_residual twice as many (its first block gets the encoder's bf16 under autocast, the others fp32):
    2 + 4 x 2 = 10 graphs at four batch sizes, past dynamo's default limit of 8, where the last batch size failed.
    The fast path is forced on here with CPU bf16 autocast and dynamo's eager backend (no inductor)."""
    from ssmvit.fastpath import FastPath
    from ssmvit.profiling import STATIC_COMPILES

    fast = FastPath(bf16_autocast=True, compile=True, compile_scope="blocks", s4d_chunked_conv=True,
                    bf16_residual=False)
    from ssmvit import fastpath

    for module in (profiling, fastpath):  # the profile's and its train step's
        monkeypatch.setattr(module, "resolve_fast_path", lambda *a, **k: copy.deepcopy(fast))
    monkeypatch.setattr(FastPath, "autocast", lambda self: torch.autocast("cpu", dtype=torch.bfloat16))
    graphs = []

    def counting_eager(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn=None, **kw: compile_(fn, **{**kw, "backend": counting_eager}))
    batch_sizes = (1, 2, 3, 4)
    p = profile_model(cfg, "organamnist", 28, "s4d", device="cpu", batch_sizes=batch_sizes, repeats=1, warmup=1)
    assert p["train"]["trained_note"] is None and p["train"]["trained_compiles"] == STATIC_COMPILES
    assert all("samples_per_s_median" in p["inference"]["trained_results"][str(b)] for b in batch_sizes)
    assert len(graphs) == 2 * (1 + len(batch_sizes)) > 8
    torch._dynamo.reset()


def _force_fast_path(monkeypatch, graphs: list, **parts):
    """The fast path on the CPU (bf16 autocast, compiled blocks) with dynamo's eager backend: each compiled graph's
    code is appended to ``graphs``."""
    from ssmvit import fastpath
    from ssmvit.fastpath import FastPath

    fast = FastPath(bf16_autocast=True, compile=True, compile_scope="blocks", s4d_chunked_conv=True, **parts)
    for module in (profiling, fastpath):
        monkeypatch.setattr(module, "resolve_fast_path", lambda *a, **k: copy.deepcopy(fast))
    monkeypatch.setattr(FastPath, "autocast", lambda self: torch.autocast("cpu", dtype=torch.bfloat16))

    def recording_eager(gm, example_inputs):
        graphs.append((gm.code, [(tuple(t.shape), t.dtype) for t in example_inputs if isinstance(t, torch.Tensor)]))
        return gm.forward

    monkeypatch.setattr(torch, "compile", lambda fn=None, **kw: TORCH_COMPILE(fn, **{**kw, "backend": recording_eager}))


@pytest.mark.parametrize("name, bf16_residual", [("vit", True), ("s4d", True), ("s4d", False)])
def test_the_compile_stage_compiles_exactly_the_graphs_its_profile_compiles(cfg, monkeypatch, name, bf16_residual,
                                                                           tmp_path):
    """What the compile job puts into the inductor cache is what the profile then asks for: the same graphs (code,
    input shapes and dtypes), gray and RGB, in the same order, also with the profile's default repeats and warm-up
    (had it compiled others, the profile would compile its own on the exclusive card). S4D without bf16_residual
    compiles each block graph twice (bf16 into its first block, fp32 into the others)."""
    from ssmvit.fastpath import COMPILE_CACHE_COUNTERS
    from ssmvit.profiling import STATIC_COMPILES, compile_as_trained, profile_datasets

    graphs_compile, graphs_profile = [], []
    study = {**cfg, "outdir": str(tmp_path)}
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "unset")  # recorded, so that teardown restores the variable
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")  # the study's, set by the job itself
    _force_fast_path(monkeypatch, graphs_compile, bf16_residual=bf16_residual)
    record = compile_as_trained(study, ["organamnist", "bloodmnist", "octmnist"], 28, name, device="cpu",
                                batch_sizes=(1, 3))
    _force_fast_path(monkeypatch, graphs_profile, bf16_residual=bf16_residual)
    profile_datasets(study, ["organamnist", "bloodmnist", "octmnist"], 28, name, device="cpu", batch_sizes=(1, 3),
                     repeats=profiling.DEFAULT_REPEATS, warmup=profiling.DEFAULT_WARMUP)
    torch._dynamo.reset()
    # gray (organamnist, octmnist) and RGB (bloodmnist): a step and two batch sizes each
    assert [s["datasets"] for s in record["shapes"]] == [["organamnist", "octmnist"], ["bloodmnist"]]
    assert all(s["compiles"] == STATIC_COMPILES and s["note"] is None for s in record["shapes"])
    assert all(s["status"] == {"train": "ok", "1": "ok", "3": "ok"} for s in record["shapes"])
    # dynamo's eager backend: no inductor, so nothing hit or missed its cache (counted per shape)
    assert all(s["compile_cache"] == dict.fromkeys(COMPILE_CACHE_COUNTERS, 0) for s in record["shapes"])
    per_shape = 3 if name == "vit" or bf16_residual else 6
    assert len(graphs_compile) >= 2 * per_shape
    assert graphs_compile == graphs_profile
    assert record["inductor_cache"] == str(tmp_path / ".torchinductor-cache")


def test_the_compile_stage_has_nothing_to_compile_where_compile_does_not_apply(cfg, tmp_path):
    from ssmvit.profiling import compile_as_trained

    record = compile_as_trained({**cfg, "outdir": str(tmp_path)}, ["organamnist"], 28, "s4d", device="cpu")
    assert record["shapes"] == [] and record["inductor_cache"] is None
    assert record["note"] == "train.fast_path.compile is off or does not apply on cpu: nothing to compile"
