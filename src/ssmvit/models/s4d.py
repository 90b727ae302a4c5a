"""S4D: a diagonal state space model reading an image as a pixel sequence.

Follows the S4 repository's minimal S4D layer (Gu et al., "On the
Parameterization and Initialization of Diagonal State Space Models", 2022):
the kernel generator is its own module; the layer convolves with it by FFT.
Parameters that need their own learning rate and no weight decay are marked
where they are created (``_ssm_lr``), and the optimiser setup reads the mark.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def mark_ssm_param(p: nn.Parameter) -> nn.Parameter:
    """Mark a parameter for the SSM parameter group (own lr, no weight decay)."""
    p._ssm_param = True  # read by training.build_optimizer
    return p


class S4DKernel(nn.Module):
    """Generates the length-L convolution kernel of H diagonal SSMs of N/2 complex states.

    A = -1/2 + i*pi*n (S4D-Lin), step dt = exp(log_dt) with log_dt uniform in
    [log 1e-3, log 1e-1], zero-order-hold discretisation; the kernel is the
    Vandermonde product K[h, l] = 2 * Re(sum_n C'[h, n] * exp(dt*A[h, n] * l)).
    """

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        h, n = d_model, d_state // 2
        log_dt = torch.rand(h) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        c = torch.randn(h, n, dtype=torch.cfloat)
        self.log_dt = mark_ssm_param(nn.Parameter(log_dt))
        self.C = mark_ssm_param(nn.Parameter(torch.view_as_real(c)))
        self.log_A_real = mark_ssm_param(nn.Parameter(torch.log(0.5 * torch.ones(h, n))))
        self.A_imag = mark_ssm_param(nn.Parameter(math.pi * torch.arange(n).float().repeat(h, 1)))

    def forward(self, length: int) -> torch.Tensor:
        dt = torch.exp(self.log_dt)  # (H)
        c = torch.view_as_complex(self.C)  # (H, N/2)
        a = -torch.exp(self.log_A_real) + 1j * self.A_imag  # (H, N/2)
        dta = a * dt.unsqueeze(-1)
        vandermonde = dta.unsqueeze(-1) * torch.arange(length, device=a.device)  # (H, N/2, L)
        c = c * (torch.exp(dta) - 1.0) / a
        return 2 * torch.einsum("hn,hnl->hl", c, torch.exp(vandermonde)).real  # (H, L)


class S4DLayer(nn.Module):
    """(B, H, L) -> (B, H, L): causal FFT convolution with the SSM kernel, skip D, GELU, 1x1 conv + GLU."""

    def __init__(self, d_model: int, d_state: int = 64, dropout: float = 0.0):
        super().__init__()
        self.kernel = S4DKernel(d_model, d_state)
        self.D = nn.Parameter(torch.randn(d_model))
        self.activation = nn.GELU()
        # Same dropout mask across the sequence (the S4 reference's DropoutNd / Dropout1d).
        self.dropout = nn.Dropout1d(dropout) if dropout > 0 else nn.Identity()
        self.output_linear = nn.Sequential(nn.Conv1d(d_model, 2 * d_model, kernel_size=1), nn.GLU(dim=-2))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        length = u.shape[-1]
        k = self.kernel(length)  # (H, L)
        # FFT of length 2L makes the circular convolution a causal linear one.
        k_f = torch.fft.rfft(k, n=2 * length)
        u_f = torch.fft.rfft(u, n=2 * length)
        y = torch.fft.irfft(u_f * k_f, n=2 * length)[..., :length]
        y = y + u * self.D.unsqueeze(-1)
        return self.output_linear(self.dropout(self.activation(y)))


class S4DClassifier(nn.Module):
    """Input (B, L, C) raster-scanned pixels, output (B, n_classes) logits.

    Linear encoder of the pixel channels, residual S4D blocks with post-LayerNorm
    and dropout, mean pooling over the sequence, linear decoder.
    """

    def __init__(self, n_channels: int, n_classes: int, d_model: int = 128, n_layers: int = 4,
                 d_state: int = 64, dropout: float = 0.1):
        super().__init__()
        self.encoder = nn.Linear(n_channels, d_model)
        self.layers = nn.ModuleList(S4DLayer(d_model, d_state, dropout) for _ in range(n_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.dropouts = nn.ModuleList(nn.Dropout1d(dropout) if dropout > 0 else nn.Identity() for _ in range(n_layers))
        self.decoder = nn.Linear(d_model, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder(x).transpose(-1, -2)  # (B, H, L)
        for layer, norm, dropout in zip(self.layers, self.norms, self.dropouts):
            z = dropout(layer(x))
            x = norm((z + x).transpose(-1, -2)).transpose(-1, -2)  # post-LN residual
        return self.decoder(x.mean(dim=-1))
