import math

import pytest
import torch

from ssmvit.config import load, model_settings
from ssmvit.datasets import describe
from ssmvit.models import S4DClassifier, S4DKernel, S4DLayer, build_model, count_params
from ssmvit.training import build_optimizer

# The seed study's table: ViT 22.14 M (OrganAMNIST 28x28), 22.32 M (DermaMNIST; its rows are 64x64);
# S4D 0.20 M (d_model 128) and 0.66 M (d_model 256).
SEED_PARAMS_M = {("vit", "organamnist", 28): 22.14, ("vit", "dermamnist", 64): 22.32,
                 ("s4d", "organamnist", 28): 0.20, ("s4d", "dermamnist", 64): 0.66}


def study_model(name, dataset, res):
    cfg = load(["config.yaml"])
    d = describe(dataset)
    return build_model(name, d["n_channels"], d["n_classes"], res, **model_settings(cfg, name, d["n_channels"]))


@pytest.mark.parametrize("key, millions", SEED_PARAMS_M.items())
def test_parameter_counts_match_seed_table(key, millions):
    name, dataset, res = key
    assert round(count_params(study_model(name, dataset, res)) / 1e6, 2) == millions


def test_parameter_counts_exact_formula():
    # ViT: conv patch embed + cls + pos + 8 blocks + final LN + head, all from the architecture.
    d, mlp, depth = 768, 256, 8
    block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * mlp + mlp) + (mlp * d + d)
    vit = (1 * 16 * d + d) + d + 50 * d + depth * block + 2 * d + (d * 11 + 11)
    assert count_params(study_model("vit", "organamnist", 28)) == vit == 22_139_659
    # S4D layer: log_dt H, C H*N, A_real and A_imag H*N/2 each, D H, 1x1 conv 2H*H+2H, LayerNorm 2H.
    h, n = 128, 64
    layer = h + h * n + h * n // 2 * 2 + h + (2 * h * h + 2 * h) + 2 * h
    s4d = (1 * h + h) + 4 * layer + (h * 11 + 11)
    assert count_params(study_model("s4d", "organamnist", 28)) == s4d == 201_355


def test_resnet18_is_torchvisions_resnet18_with_medmnists_small_image_stem():
    # torchvision's resnet18 (3 channels, 1000 classes) has 11,689,512 parameters with its 7x7 stem (9,408);
    # the 3x3 stem has 1,728. With 1 channel and 11 classes: stem 576, head 512 * 11 + 11.
    assert count_params(build_model("resnet18", 3, 1000, 224)) == 11_689_512 - 9_408 + 1_728
    assert count_params(study_model("resnet18", "organamnist", 28)) == 11_689_512 - 9_408 + 576 - 513_000 + 5_643
    m = build_model("resnet18", 1, 11, 28).eval()
    features = m.stem(torch.randn(1, 1, 28, 28))
    assert features.shape == (1, 64, 28, 28)  # no stride, no max-pool: the 28x28 map survives the stem


@pytest.mark.parametrize("name", ["vit", "s4d", "resnet18"])
@pytest.mark.parametrize("channels, res", [(1, 28), (3, 64)])
def test_forward_shapes(name, channels, res):
    torch.manual_seed(0)
    settings = {"vit": dict(embed_dim=32, depth=2, num_heads=4, mlp_dim=64),
                "s4d": dict(d_model=16, n_layers=2, d_state=8), "resnet18": dict(width=4)}[name]
    m = build_model(name, channels, 5, res, **settings)
    x = torch.randn(3, res * res, channels) if name == "s4d" else torch.randn(3, channels, res, res)
    out = m(x)
    assert out.shape == (3, 5) and torch.isfinite(out).all()


def test_s4d_fft_convolution_equals_the_recurrence():
    """The FFT path must compute the discretised SSM: x_k = Ab x_{k-1} + Bb u_k, y_k = 2 Re(C x_k) + D u_k."""
    torch.manual_seed(0)
    h, n, length = 3, 8, 37
    layer = S4DLayer(h, n, dropout=0.0).double()
    u = torch.randn(2, h, length, dtype=torch.double)
    kern = layer.kernel
    dt = torch.exp(kern.log_dt.double())
    a = -torch.exp(kern.log_A_real.double()) + 1j * kern.A_imag.double()
    c = torch.view_as_complex(kern.C.double().contiguous())
    ab = torch.exp(a * dt[:, None])  # zero-order hold
    bb = (ab - 1) / a  # with B = 1
    state = torch.zeros(2, h, n // 2, dtype=torch.cdouble)
    ys = []
    for k in range(length):
        state = ab * state + bb * u[:, :, k, None]
        ys.append(2 * (c * state).sum(-1).real + layer.D.double() * u[:, :, k])
    y_rec = torch.stack(ys, -1)
    # The layer applies GELU and the GLU output map after the SSM; compare the SSM part.
    k_fft = kern(length).double()
    y_fft = torch.fft.irfft(torch.fft.rfft(u, n=2 * length) * torch.fft.rfft(k_fft, n=2 * length), n=2 * length)[..., :length]
    y_fft = y_fft + u * layer.D.double()[:, None]
    assert torch.allclose(y_fft, y_rec, atol=1e-9)
    # And it is causal: changing the future does not change the past.
    u2 = u.clone()
    u2[..., 20:] += 1.0
    out1, out2 = layer(u), layer(u2)
    assert torch.allclose(out1[..., :20], out2[..., :20], atol=1e-10)
    assert not torch.allclose(out1[..., 20:], out2[..., 20:])


def test_s4d_init_is_s4d_lin_with_log_step_range():
    torch.manual_seed(0)
    layer = S4DLayer(64, 16)
    k = layer.kernel
    assert torch.allclose(torch.exp(k.log_A_real), torch.full_like(k.log_A_real, 0.5))
    assert torch.allclose(k.A_imag[0], math.pi * torch.arange(8).float())
    dt = torch.exp(k.log_dt)
    assert dt.min() >= 1e-3 - 1e-9 and dt.max() <= 1e-1 + 1e-9


def test_ssm_params_get_their_own_lr_and_no_weight_decay():
    m = build_model("s4d", 1, 11, 28, d_model=16, n_layers=2, d_state=8)
    opt = build_optimizer(m, lr=1e-2, weight_decay=0.01, ssm_lr=1e-3)
    rest, ssm = opt.param_groups
    assert rest["lr"] == 1e-2 and rest["weight_decay"] == 0.01
    assert ssm["lr"] == 1e-3 and ssm["weight_decay"] == 0.0
    assert len(ssm["params"]) == 2 * 4  # log_dt, C, log_A_real, A_imag per layer
    opt2 = build_optimizer(m, lr=1e-4, weight_decay=0.01, ssm_lr=1e-3)
    assert opt2.param_groups[1]["lr"] == 1e-4  # min(lr, ssm_lr)


@pytest.mark.parametrize("length", [784, 4096, 100, 37, 10])
def test_s4d_chunked_convolution_equals_the_fft_convolution(length):
    """chunked_causal_conv (Toeplitz within chunks, SSM state between them) == causal_fft_conv, in fp64."""
    from ssmvit.models.s4d import causal_fft_conv, chunked_causal_conv, conv_chunk_size

    torch.manual_seed(0)
    kernel = S4DKernel(6, 16).double()
    with torch.no_grad():
        kernel.log_dt.uniform_(-7, -1)  # slow and fast decays: the state carries across many chunks
    u = torch.randn(6, 3, length, dtype=torch.float64)  # (H, B, L)
    ref = causal_fft_conv(u.transpose(0, 1), kernel(length)).transpose(0, 1)
    for chunk in (None, 16):
        got = chunked_causal_conv(u, kernel, chunk)
        assert got.shape == ref.shape
        assert torch.allclose(got, ref, rtol=0, atol=1e-12 * float(ref.abs().max())), (chunk, (got - ref).abs().max())
    assert conv_chunk_size(length) == {784: 112, 4096: 256, 100: 100, 37: 37, 10: 10}[length]


def test_s4d_chunked_model_equals_the_fft_model_with_gradients_and_dropout():
    """conv_algorithm 'chunked' ((H, B, L) layout) computes the same logits and gradients, same dropout masks."""
    torch.manual_seed(0)
    m = S4DClassifier(3, 7, d_model=16, n_layers=2, d_state=8, dropout=0.1).double().train()
    x = torch.randn(5, 784, 3, dtype=torch.float64)
    results = []
    for algorithm in ("fft", "chunked"):
        m.conv_algorithm = algorithm
        torch.manual_seed(1)
        out = m(x)
        out.square().sum().backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in m.named_parameters()}))
        m.zero_grad(set_to_none=True)
    (out_a, grads_a), (out_b, grads_b) = results
    assert torch.allclose(out_a, out_b, rtol=1e-10, atol=1e-12)
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], rtol=1e-8, atol=1e-12), name
    m.conv_algorithm = "fourier"
    with pytest.raises(ValueError, match="unknown S4D conv_algorithm 'fourier'; valid: fft, chunked"):
        m(x)
