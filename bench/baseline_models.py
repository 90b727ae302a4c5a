"""Plain eager fp32 reference implementations of the study's two models, for bench_train.py.

The same architectures as ``ssmvit.models`` written straightforwardly, as the
project had them before the GPU fast path: S4D with the complex kernel
(complex exp + einsum) and an FFT of length exactly 2L; ViT with
``F.scaled_dot_product_attention`` (standard PyTorch, fp32). Parameter and
buffer names are the same as in ``ssmvit.models``, so one ``state_dict``
loads into both (``load_state_dict(strict=True)``) and outputs can be compared.
No autocast, no compile, no fused optimizer: the benchmark's baseline.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# ------------------------------------------------------------------------------------------ S4D
class S4DKernel(nn.Module):
    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        h, n = d_model, d_state // 2
        log_dt = torch.rand(h) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        self.C = nn.Parameter(torch.view_as_real(torch.randn(h, n, dtype=torch.cfloat)))
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(h, n)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(n).float().repeat(h, 1))
        for p in (self.log_dt, self.C, self.log_A_real, self.A_imag):
            p._ssm_param = True  # same optimiser groups as the project's model

    def forward(self, length: int) -> torch.Tensor:
        dt = torch.exp(self.log_dt)
        c = torch.view_as_complex(self.C)
        a = -torch.exp(self.log_A_real) + 1j * self.A_imag
        dta = a * dt.unsqueeze(-1)
        vandermonde = dta.unsqueeze(-1) * torch.arange(length, device=a.device)
        c = c * (torch.exp(dta) - 1.0) / a
        return 2 * torch.einsum("hn,hnl->hl", c, torch.exp(vandermonde)).real


class S4DLayer(nn.Module):
    def __init__(self, d_model: int, d_state: int = 64, dropout: float = 0.0):
        super().__init__()
        self.kernel = S4DKernel(d_model, d_state)
        self.D = nn.Parameter(torch.randn(d_model))
        self.activation = nn.GELU()
        self.dropout = nn.Dropout1d(dropout) if dropout > 0 else nn.Identity()
        self.output_linear = nn.Sequential(nn.Conv1d(d_model, 2 * d_model, kernel_size=1), nn.GLU(dim=-2))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        length = u.shape[-1]
        k = self.kernel(length)
        k_f = torch.fft.rfft(k, n=2 * length)
        u_f = torch.fft.rfft(u, n=2 * length)
        y = torch.fft.irfft(u_f * k_f, n=2 * length)[..., :length]
        y = y + u * self.D.unsqueeze(-1)
        return self.output_linear(self.dropout(self.activation(y)))


class S4DClassifier(nn.Module):
    def __init__(self, n_channels: int, n_classes: int, d_model: int = 128, n_layers: int = 4,
                 d_state: int = 64, dropout: float = 0.1):
        super().__init__()
        self.encoder = nn.Linear(n_channels, d_model)
        self.layers = nn.ModuleList(S4DLayer(d_model, d_state, dropout) for _ in range(n_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.dropouts = nn.ModuleList(nn.Dropout1d(dropout) if dropout > 0 else nn.Identity() for _ in range(n_layers))
        self.decoder = nn.Linear(d_model, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder(x).transpose(-1, -2)
        for layer, norm, dropout in zip(self.layers, self.norms, self.dropouts):
            z = dropout(layer(x))
            x = norm((z + x).transpose(-1, -2)).transpose(-1, -2)
        return self.decoder(x.mean(dim=-1))


# ------------------------------------------------------------------------------------------ ViT
class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj_drop(self.proj(y.transpose(1, 2).reshape(b, n, d)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, n_channels: int, n_classes: int, image_size: int, patch_size: int = 4,
                 embed_dim: int = 768, depth: int = 8, num_heads: int = 8, mlp_dim: int = 256,
                 dropout: float = 0.1):
        super().__init__()
        n_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(n_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_dim, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = self.pos_drop(torch.cat([cls, x], dim=1) + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def build_baseline(name: str, n_channels: int, n_classes: int, image_size: int, **settings) -> nn.Module:
    """The baseline of ``ssmvit.models.build_model(name, ...)``; load the project's weights into it."""
    if name == "vit":
        return ViT(n_channels, n_classes, image_size, **settings)
    if name == "s4d":
        return S4DClassifier(n_channels, n_classes, **settings)
    raise ValueError(f"unknown model {name!r}; valid: vit, s4d")
