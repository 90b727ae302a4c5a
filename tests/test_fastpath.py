"""The GPU fast path: same computation as the plain path, no-op on CPU, and its benchmark runs."""

import copy
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import RAW, RUN
from ssmvit.config import defaults
from ssmvit.fastpath import FastPath, default_fast_path, make_train_step, resolve_fast_path
from ssmvit.models import build_model
from ssmvit.models.s4d import S4DClassifier, S4DKernel, S4DLayer, causal_fft_conv, fft_size
from ssmvit.training import build_optimizer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from baseline_models import build_baseline  # noqa: E402

TINY = {"vit": dict(embed_dim=32, depth=2, num_heads=4, mlp_dim=64, dropout=0.1),
        "s4d": dict(d_model=16, n_layers=2, d_state=8, dropout=0.1)}


def _input(name, batch, channels, res, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, channels, res, res) if name == "vit" else (batch, res * res, channels)
    return torch.randn(shape, generator=g)


@pytest.mark.parametrize("length", [37, 784, 4096])
def test_real_arithmetic_kernel_equals_complex_kernel(length):
    torch.manual_seed(0)
    k = S4DKernel(32, 64)
    with torch.no_grad():  # spread the steps and states beyond the init
        k.log_A_real.add_(0.5 * torch.randn_like(k.log_A_real))
    with torch.no_grad():
        real, cplx = k(length), k.complex_kernel(length)
    assert real.dtype == torch.float32 and real.shape == (32, length)
    assert float((real - cplx).norm() / cplx.norm()) < 1e-5
    assert float((real - cplx).abs().max() / cplx.abs().max()) < 1e-5
    kd = copy.deepcopy(k).double()
    assert torch.allclose(kd(length), kd.complex_kernel(length), rtol=1e-10, atol=1e-10)
    # Gradients agree too (what training sees).
    g1 = torch.autograd.grad(kd(length).square().sum(), list(kd.parameters()))
    g2 = torch.autograd.grad(kd.complex_kernel(length).square().sum(), list(kd.parameters()))
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-8)


def test_fft_size_is_smallest_5_smooth_at_least_n():
    def smooth(m):
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for n in range(1, 3000):
        s = fft_size(n)
        assert s >= n and smooth(s) and not any(smooth(m) for m in range(n, s))
    assert fft_size(2 * 4096) == 8192 and fft_size(2 * 784) == 1600


@pytest.mark.parametrize("length", [37, 784, 1024])
def test_padded_fft_convolution_equals_2L_fft_and_direct_sum(length):
    g = torch.Generator().manual_seed(1)
    u = torch.randn(2, 3, length, generator=g, dtype=torch.double)
    k = torch.randn(3, length, generator=g, dtype=torch.double) * torch.exp(-torch.arange(length) / 50.0)
    y = causal_fft_conv(u, k)
    y2l = torch.fft.irfft(torch.fft.rfft(u, n=2 * length) * torch.fft.rfft(k, n=2 * length), n=2 * length)[..., :length]
    assert torch.allclose(y, y2l, atol=1e-12)
    if length == 37:  # direct causal sum
        direct = torch.stack([(k[:, : i + 1].flip(-1) * u[..., : i + 1]).sum(-1) for i in range(length)], -1)
        assert torch.allclose(y, direct, atol=1e-12)
    yf = causal_fft_conv(u.float(), k.float())
    assert yf.dtype == torch.float32 and float((yf - y2l).norm() / y2l.norm()) < 1e-5


def test_s4d_under_bf16_autocast_keeps_kernel_and_fft_in_fp32():
    torch.manual_seed(0)
    layer = S4DLayer(8, 8)
    u = torch.randn(2, 8, 784)
    seen = {}
    real_rfft = torch.fft.rfft

    def spy(x, *a, **kw):
        seen.setdefault("dtypes", []).append(x.dtype)
        return real_rfft(x, *a, **kw)

    torch.fft.rfft = spy
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert layer.kernel(784).dtype == torch.float32
            out = layer(u.bfloat16())
    finally:
        torch.fft.rfft = real_rfft
    assert seen["dtypes"] == [torch.float32, torch.float32] and torch.isfinite(out).all()


@pytest.mark.parametrize("algorithm", ["fft", "chunked"])
def test_s4d_bf16_residual_stores_the_block_outputs_in_the_encoders_dtype(algorithm):
    """keep_residual_dtype: under bf16 autocast each block hands a bf16 stream on (LayerNorm still in fp32, rounded
    only where it is stored); without autocast the stream is fp32 and the flag changes no bit."""
    from ssmvit.models import s4d

    torch.manual_seed(0)
    m = S4DClassifier(3, 7, d_model=16, n_layers=3, d_state=8, dropout=0.0).eval()
    m.conv_algorithm = algorithm
    x = torch.randn(4, 784, 3)
    block = {"fft": s4d._block_bhl, "chunked": s4d._block_hbl}[algorithm]
    seen = []

    def spy(layer, norm, dropout, u, keep_dtype=False):
        seen.append(u.dtype)
        return block(layer, norm, dropout, u, keep_dtype)

    def run(keep, autocast):
        m.keep_residual_dtype = keep
        seen.clear()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), \
                pytest.MonkeyPatch.context() as mp:
            mp.setattr(s4d, {"fft": "_block_bhl", "chunked": "_block_hbl"}[algorithm], spy)
            return m(x).float(), list(seen)

    plain, plain_dtypes = run(False, False)
    kept, kept_dtypes = run(True, False)
    assert torch.equal(plain, kept) and plain_dtypes == kept_dtypes == [torch.float32] * 3
    fp32_stream, fp32_dtypes = run(False, True)
    bf16_stream, bf16_dtypes = run(True, True)
    if algorithm == "chunked":  # the encoder's bf16, then LayerNorm's fp32 (nn.LayerNorm: fp32 under CUDA autocast only)
        assert fp32_dtypes == [torch.bfloat16] + [torch.float32] * 2
    assert bf16_dtypes == [torch.bfloat16] * 3
    for logits in (fp32_stream, bf16_stream):
        assert float((logits - plain).norm() / plain.norm()) < 2e-2  # bench's logits tolerance
    # one block, off: exactly the block as it was before the flag existed (the reference runs' arithmetic: a bf16
    # sum); on: LayerNorm of the sum taken in fp32, rounded to bf16 where it is stored, nothing else
    u = torch.randn(16, 4, 784).bfloat16() if algorithm == "chunked" else torch.randn(4, 16, 784).bfloat16()
    layer, norm, dropout = m.layers[0], m.norms[0], m.dropouts[0]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        off, on = block(layer, norm, dropout, u), block(layer, norm, dropout, u, True)
        if algorithm == "chunked":
            z = layer.forward_hbl(u)
            before, fp32_sum = s4d._layer_norm_dim0(z + u, norm), s4d._layer_norm_dim0(z.float() + u.float(), norm)
        else:
            z = layer(u)
            before = norm((z + u).transpose(-1, -2)).transpose(-1, -2)
            fp32_sum = norm((z.float() + u.float()).transpose(-1, -2)).transpose(-1, -2)
    assert (z + u).dtype == torch.bfloat16 and torch.equal(off, before)
    assert on.dtype == torch.bfloat16 and torch.equal(on, fp32_sum.bfloat16())


def test_bf16_residual_applies_with_bf16_autocast_only(monkeypatch):
    from ssmvit.fastpath import apply_to_model

    m = S4DClassifier(1, 2, d_model=8, n_layers=1, d_state=4)
    assert apply_to_model(m, FastPath(bf16_autocast=True, bf16_residual=True)).keep_residual_dtype is True
    assert apply_to_model(m, FastPath(bf16_autocast=True)).keep_residual_dtype is False
    assert default_fast_path()["bf16_residual"] is True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # resolve as on a GPU without one
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_fast_path(None, "cuda").bf16_residual is True
    assert resolve_fast_path({"bf16_autocast": False}, "cuda").bf16_residual is False
    assert resolve_fast_path({"bf16_residual": False}, "cuda").bf16_residual is False


def test_vit_attention_calls_sdpa_without_mask_and_with_unit_stride_heads(monkeypatch):
    import ssmvit.models.vit as vit_mod

    calls = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        calls.append((args, kwargs, [t.stride(-1) for t in (q, k, v)]))
        return real(q, k, v, *args, **kwargs)

    monkeypatch.setattr(vit_mod.F, "scaled_dot_product_attention", spy)
    m = build_model("vit", 1, 11, 28, **TINY["vit"])
    m(_input("vit", 2, 1, 28))
    assert len(calls) == 2
    for args, kwargs, strides in calls:
        assert not args and kwargs.get("attn_mask") is None and not kwargs.get("is_causal")
        assert strides == [1, 1, 1]


def test_fast_path_resolves_to_nothing_on_cpu():
    every = {k: True for k in default_fast_path()} | {"compile_scope": "model"}
    assert resolve_fast_path(every, "cpu") == FastPath()
    assert resolve_fast_path(None, torch.device("cpu")).any is False
    assert resolve_fast_path(FastPath(True, True, True, True, "blocks", True), "cpu") == FastPath()
    assert default_fast_path() == defaults()["train"]["fast_path"]  # the schema's defaults
    with pytest.raises(ValueError, match="unknown fast_path"):
        resolve_fast_path({"channels_last": True}, "cpu")
    with pytest.raises(ValueError, match="compile_scope 'layers'; valid: blocks, model"):
        resolve_fast_path({"compile_scope": "layers"}, "cpu")


@pytest.mark.parametrize("name", ["s4d", "vit"])
def test_fast_path_step_on_cpu_is_bit_identical_to_the_plain_step(name):
    """make_train_step with every part requested == the plain eager step, bit for bit, on CPU."""
    every = {k: True for k in default_fast_path()} | {"compile_scope": "model"}
    x = _input(name, 24, 1, 28)
    y = torch.randint(0, 11, (24,), generator=torch.Generator().manual_seed(2))
    finals = []
    for use_fast in (False, True):
        torch.manual_seed(0)
        m = build_model(name, 1, 11, 28, **TINY[name])
        opt = build_optimizer(m, 1e-3, 0.01, 1e-3, fused=resolve_fast_path(every, "cpu").fused_optimizer)
        step = make_train_step(m, opt, every, "cpu")
        assert step.fast_path == FastPath() and step.forward_module is m
        torch.manual_seed(5)  # same dropout masks
        losses = []
        for i in range(3):
            xb, yb = x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8]
            if use_fast:
                loss, logits = step(xb, yb)
            else:  # the loop body of training.py before the fast path
                logits = m(xb)
                loss = F.cross_entropy(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            losses.append(loss.detach())
        finals.append(({k: v.clone() for k, v in m.state_dict().items()}, torch.stack(losses)))
    (wa, la), (wb, lb) = finals
    assert torch.equal(la, lb) and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_training_summary_records_inactive_fast_path_on_cpu(tiny_cfg, in_tmp):
    from ssmvit.datasets import fetch_raw, preprocess
    from ssmvit.training import train_one_run

    cfg = copy.deepcopy(tiny_cfg)
    cfg["train"].update(epochs=1, max_train_samples=64, max_eval_samples=32)
    fetch_raw(cfg, "organamnist", 28)
    preprocess(cfg, "organamnist", 28, RAW("organamnist", 28))
    train_one_run(cfg, "organamnist", 28, "s4d", 0, progress=False)
    summary = json.loads((RUN("organamnist", 28, "s4d", 0) / "train_summary.json").read_text())
    assert summary["fast_path"] == {"bf16_autocast": False, "fused_optimizer": False, "s4d_chunked_conv": False,
                                    "compile": False, "compile_scope": None, "cuda_graphs": False,
                                    "bf16_residual": False}
    assert summary["fast_path_requested"] == default_fast_path()
    assert summary["fast_path_note"] is None


def test_training_arithmetic_names_the_active_fast_path_parts():
    """The runs table (and the paper) say how each run's steps were computed."""
    from ssmvit.aggregate import training_arithmetic

    assert training_arithmetic(FastPath().as_dict()) == "fp32 eager"
    assert training_arithmetic(None) == "fp32 eager"
    gpu = FastPath(bf16_autocast=True, fused_optimizer=True, s4d_chunked_conv=True, compile=True,
                   compile_scope="blocks", bf16_residual=True).as_dict()
    assert training_arithmetic(gpu) == ("bf16 autocast + fused AdamW + torch.compile (blocks) + "
                                        "chunked S4D convolution + bf16 S4D residual stream")
    assert training_arithmetic(gpu, "s4d") == training_arithmetic(gpu)
    assert training_arithmetic(gpu, "vit") == "bf16 autocast + fused AdamW + torch.compile (blocks)"  # S4D's only
    assert training_arithmetic(gpu | {"bf16_residual": False}) == ("bf16 autocast + fused AdamW + torch.compile "
                                                                   "(blocks) + chunked S4D convolution")


@pytest.mark.parametrize("name", ["s4d", "vit"])
@pytest.mark.parametrize("channels, res", [(1, 28), (3, 16)])
def test_baseline_models_load_the_same_weights_and_give_the_same_logits(name, channels, res):
    torch.manual_seed(0)
    settings = {**TINY[name], "dropout": 0.1}
    fast = build_model(name, channels, 7, res, **settings).eval()
    base = build_baseline(name, channels, 7, res, **settings).eval()
    base.load_state_dict(fast.state_dict(), strict=True)
    assert [n for n, _ in fast.named_parameters()] == [n for n, _ in base.named_parameters()]
    ssm = [n for n, p in base.named_parameters() if getattr(p, "_ssm_param", False)]
    assert ssm == [n for n, p in fast.named_parameters() if getattr(p, "_ssm_param", False)]
    x = _input(name, 4, channels, res)
    with torch.no_grad():
        a, b = fast(x), base(x)
    if name == "vit":
        assert torch.equal(a, b)
    else:  # real-arithmetic kernel and 5-smooth FFT length vs complex kernel and 2L FFT: fp32 rounding only
        assert float((a - b).norm() / b.norm()) < 1e-5


def test_bench_quick_runs_on_cpu(tmp_path):
    out = tmp_path / "quick.csv"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_train.py"), "--device", "cpu", "--quick",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 * 2 * 3  # (s4d, vit) x (gray, rgb) x (train 4, train 8, infer 16)
    for r in rows:
        assert r["status"] == "ok" and r["numerics_ok"] == "True"
        assert float(r["baseline_samples_s"]) > 0 and float(r["fast_samples_s"]) > 0 and float(r["speedup"]) > 0
        assert float(r["logits_rel_l2"]) < 1e-5  # nothing of the fast path applies on CPU
        assert r["fast_path"].startswith("none") and r["torch"] == torch.__version__
    assert {r["phase"] for r in rows} == {"train", "infer"}
    assert f"wrote {out}" in proc.stdout
    assert "summary" not in proc.stdout  # a quick CPU run is not a benchmark result


def test_bench_summary_puts_each_speedup_beside_its_target(tmp_path):
    out = tmp_path / "summary.csv"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_train.py"), "--summarize",
                           "bench/results/h200.csv", "--summary", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {(r["model"], r["res"], r["colour"], r["phase"], r["batch"]): r for r in csv.DictReader(out.open())}
    assert len(rows) == 24 and {r["gpu"] for r in rows.values()} == {"NVIDIA H200"}
    s4d64 = rows[("s4d", "64", "gray", "train", "64")]
    assert (s4d64["target"], s4d64["meets_target"]) == ("4.0", "False")
    vit64 = rows[("vit", "64", "gray", "train", "64")]
    assert vit64["target"] == "3.0" and (float(vit64["speedup"]) >= 3) == (vit64["meets_target"] == "True")
    assert rows[("vit", "28", "rgb", "train", "64")]["target"] == ""  # the targets are for grayscale training
    assert rows[("s4d", "28", "rgb", "infer", "1024")]["target"] == "3.0"


def _train_three_batches(name, fast_path, model_cls=None):
    """Train a tiny model on batches of 8, 8 and 5 (an epoch's smaller last batch) with TrainStep(fast_path), on CPU."""
    from ssmvit.fastpath import TrainStep

    torch.manual_seed(0)
    m = model_cls(1, 11, **TINY[name]) if model_cls else build_model(name, 1, 11, 28, **TINY[name])
    opt = build_optimizer(m, 1e-3, 0.01, 1e-3)
    step = TrainStep(m, opt, fast_path)
    x = _input(name, 21, 1, 28)
    y = torch.randint(0, 11, (21,), generator=torch.Generator().manual_seed(2))
    torch.manual_seed(5)
    losses = [step(x[a:b], y[a:b])[0] for a, b in ((0, 8), (8, 16), (16, 21))]
    return step, torch.stack(losses), {k: v.clone() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("name", ["s4d", "vit"])
def test_compiled_blocks_train_like_the_eager_model_and_compile_once(name):
    """compile (scope blocks; S4D with the chunked convolution) trains as the plain eager step does, within
    fp32 rounding; the blocks share one graph and the smaller last batch runs eager (no recompilation).
    Run with inductor's CPU backend: the fast path itself is CUDA-only, the compiled code path is the same."""
    import torch._inductor.config
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    fp = FastPath(compile=True, compile_scope="blocks", s4d_chunked_conv=True)
    with torch._inductor.config.patch(fallback_random=True):  # eager's dropout masks (inductor has its own RNG)
        step, losses, state = _train_three_batches(name, fp)
    assert step.compile_error is None and step.main_batch_size == 8
    assert counters["stats"]["unique_graphs"] == 1  # one graph for all blocks, none for the batch of 5
    if name == "s4d":
        assert step.model.conv_algorithm == "chunked"
    _, plain_losses, plain_state = _train_three_batches(name, FastPath())
    assert torch.allclose(losses, plain_losses, rtol=1e-4, atol=1e-5)
    for k in state:
        got, ref = state[k], plain_state[k]
        if k.endswith("attn.qkv.bias"):
            # The key bias gets no gradient (softmax is shift-invariant), only rounding noise, and AdamW turns noise
            # of either sign into steps of about lr: compiled and eager runs differ there by design (a CI run failed).
            got, ref = got.view(3, -1)[[0, 2]], ref.view(3, -1)[[0, 2]]
        assert torch.allclose(got, ref, rtol=1e-3, atol=1e-5), k


def test_a_compiler_failure_falls_back_to_the_eager_step_from_the_same_state(capsys):
    """A backend that fails: one warning line, compile_error recorded, and the run is the plain eager run."""
    from ssmvit.models import S4DClassifier

    def failing_backend(gm, example_inputs):
        raise RuntimeError("backend exploded")

    class FailingCompile(S4DClassifier):
        def compile_blocks(self, **kw):
            super().compile_blocks(backend=failing_backend)

    torch._dynamo.reset()
    fp = FastPath(compile=True, compile_scope="blocks", s4d_chunked_conv=True)
    step, losses, state = _train_three_batches("s4d", fp, FailingCompile)
    assert "torch.compile failed" in step.compile_error and "backend exploded" in step.compile_error
    assert "warning: torch.compile failed" in capsys.readouterr().out
    assert step.fast_path.compile is False and step.model.conv_algorithm == "fft"
    _, plain_losses, plain_state = _train_three_batches("s4d", FastPath(), FailingCompile)
    assert torch.equal(losses, plain_losses)  # same dropout masks: the RNG was restored for the retry
    for k in state:
        assert torch.equal(state[k], plain_state[k]), k


@pytest.mark.parametrize("name", ["s4d", "vit"])
def test_compiled_blocks_give_each_batch_size_its_own_static_graph(name):
    """compile_model compiles with static shapes: a second and a third batch size each get their own graph. Dynamo's
    default would recompile the second one with a symbolic batch dimension and reuse that graph for the third; the
    benchmark (a logits check before the training step) and the profiles (inference at four batch sizes) timed
    such graphs, whose kernels divide by runtime sizes to index, while training compiles one batch size only."""
    from ssmvit.fastpath import apply_to_model, compile_model, compiled_blocks

    graphs = []  # per compiled graph: whether a size among its inputs is symbolic

    def recording_backend(gm, example_inputs):
        graphs.append(any(isinstance(i, torch.SymInt) or
                          (isinstance(i, torch.Tensor) and any(isinstance(d, torch.SymInt) for d in i.shape))
                          for i in example_inputs))
        return gm.forward

    model = build_model(name, 1, 11, 28, **TINY[name])
    compile_blocks = model.compile_blocks
    model.compile_blocks = lambda **kw: compile_blocks(backend=recording_backend, **kw)
    torch._dynamo.reset()
    fp = FastPath(compile=True, compile_scope="blocks", s4d_chunked_conv=True)
    model = compile_model(apply_to_model(model, fp), fp).eval()
    with torch.no_grad(), compiled_blocks(model, True):
        for batch in (2, 3, 4):
            model(_input(name, batch, 1, 28))
    assert graphs == [False, False, False]
    torch._dynamo.reset()


@pytest.mark.skipif(not hasattr(torch._dynamo.config, "fail_on_recompile_limit_hit"),
                    reason="torch < 2.7 names dynamo's limit and its failure otherwise")
def test_fresh_compiles_gives_each_shape_the_whole_recompile_budget_and_fails_past_it():
    """A profile job compiles one block function for several input shapes in one process. Without a fresh start per
    shape, the second shape's compiles past dynamo's limit ran eager with only a log warning (the study of
    2026-12-07 timed part of S4D's RGB "as trained" regime eager that way); with it, each shape gets the whole
    budget, and a compile past the limit raises a compiler error instead."""
    from torch._dynamo.exc import FailOnRecompileLimitHit
    from torch._dynamo.utils import counters

    from ssmvit.fastpath import fresh_compiles, is_compile_error

    def block(x):
        return F.gelu(x) * 2

    limit = torch._dynamo.config.recompile_limit

    def compile_for(sizes):  # a new compiled wrapper of the same function, as each model's compile_blocks makes
        compiled = torch.compile(block, backend="eager", dynamic=False)
        for n in sizes:
            assert torch.equal(compiled(torch.ones(n)), block(torch.ones(n)))

    torch._dynamo.reset()
    counters.clear()
    compile_for(range(1, limit + 1))
    compile_for(range(limit + 1, 2 * limit + 1))
    assert counters["stats"]["unique_graphs"] == limit  # the second shape's calls: silently eager

    counters.clear()
    for sizes in (range(1, limit + 1), range(limit + 1, 2 * limit + 1)):
        with fresh_compiles():
            compile_for(sizes)
    assert counters["stats"]["unique_graphs"] == 2 * limit
    with fresh_compiles(), pytest.raises(FailOnRecompileLimitHit) as failure:
        compile_for(range(1, limit + 2))
    assert is_compile_error(failure.value)
    assert torch._dynamo.config.fail_on_recompile_limit_hit is False  # only within the block
    torch._dynamo.reset()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (bench/check_graph_step.py there)")
def test_the_graphed_step_trains_as_the_ungraphed_one_does(tmp_path):
    # On a GPU: capture, replays, the lr refresh and a smaller batch between replays, against two ungraphed runs
    # from the same weights (bench/check_graph_step.py; its CSV says by how much they differ).
    import check_graph_step  # bench/ is on sys.path (above)

    assert check_graph_step.main(["--models", "s4d", "vit", "--res", "28", "--steps", "8",
                                  "--out", str(tmp_path / "check.csv")]) == 0


def test_compile_cache_counts_tell_a_compile_from_a_load(tmp_path, monkeypatch):
    """What a profile records of the compile cache: the first compile of a graph misses, the same graph in a
    fresh in-process state (as in the next job) loads from the folder and only hits (inductor's CPU backend)."""
    from ssmvit.fastpath import compile_cache_counts

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 3))
    x = torch.randn(4, 8)

    def compile_and_step():
        torch._dynamo.reset()  # as a new process: only the on-disk cache remains
        before = compile_cache_counts()
        torch.compile(model)(x).sum().backward()
        return {k: v - before[k] for k, v in compile_cache_counts().items()}

    first, second = compile_and_step(), compile_and_step()
    assert first["inductor_misses"] >= 2 and first["inductor_hits"] == 0, first  # forward and backward graphs
    assert second["inductor_misses"] == 0 and second["aot_autograd_misses"] == 0, second
    assert second["inductor_hits"] + second["aot_autograd_hits"] >= 1, second
