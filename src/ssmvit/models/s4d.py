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


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in fp32 if it is in a lower precision (bf16/fp16 under autocast), else unchanged (fp64 stays)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


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
        """The (H, L) kernel in fp32 (fp64 for a double model), in real arithmetic.

        Same formula as the complex one (``complex_kernel`` below keeps it for
        reference and tests): with dtA = x + iy,
        exp(dtA * l) = e^{x l} (cos(y l) + i sin(y l)) and
        2 Re(C' exp(dtA l)) = 2 e^{x l} (Re C' cos(y l) - Im C' sin(y l)).
        No complex tensors, so inductor can fuse it. Autocast is switched off:
        the kernel sums decaying oscillations over thousands of steps and is
        computed in fp32 whatever the surrounding precision.
        """
        with torch.autocast(self.log_dt.device.type, enabled=False):
            dt = torch.exp(_at_least_fp32(self.log_dt)).unsqueeze(-1)  # (H, 1)
            c = _at_least_fp32(self.C)
            c_re, c_im = c[..., 0], c[..., 1]  # (H, N/2)
            a_re, a_im = -torch.exp(_at_least_fp32(self.log_A_real)), _at_least_fp32(self.A_imag)  # (H, N/2)
            x, y = a_re * dt, a_im * dt  # dtA
            # C' = C (exp(dtA) - 1) / A  (zero-order hold with B = 1)
            e = torch.exp(x)
            num_re, num_im = e * torch.cos(y) - 1.0, e * torch.sin(y)
            den = a_re * a_re + a_im * a_im
            q_re, q_im = (num_re * a_re + num_im * a_im) / den, (num_im * a_re - num_re * a_im) / den
            w_re, w_im = c_re * q_re - c_im * q_im, c_re * q_im + c_im * q_re
            pos = torch.arange(length, device=dt.device, dtype=dt.dtype)
            decay = torch.exp(x.unsqueeze(-1) * pos)  # (H, N/2, L)
            angle = y.unsqueeze(-1) * pos
            vander = torch.cat([decay * torch.cos(angle), decay * torch.sin(angle)], dim=1)  # (H, N, L)
            w = torch.cat([w_re, -w_im], dim=1).unsqueeze(1)  # (H, 1, N)
            return 2 * torch.bmm(w, vander).squeeze(1)  # (H, L)

    def complex_kernel(self, length: int) -> torch.Tensor:
        """The kernel by the original complex formula (complex exp + einsum); reference for tests and benchmarks."""
        dt = torch.exp(self.log_dt)  # (H)
        c = torch.view_as_complex(self.C)  # (H, N/2)
        a = -torch.exp(self.log_A_real) + 1j * self.A_imag  # (H, N/2)
        dta = a * dt.unsqueeze(-1)
        vandermonde = dta.unsqueeze(-1) * torch.arange(length, device=a.device)  # (H, N/2, L)
        c = c * (torch.exp(dta) - 1.0) / a
        return 2 * torch.einsum("hn,hnl->hl", c, torch.exp(vandermonde)).real  # (H, L)


def fft_size(n: int) -> int:
    """The smallest 5-smooth number (2^a 3^b 5^c) >= n: a length every FFT library handles fast.

    Powers of two stay as they are (8192 for L = 4096); 1568 (L = 784, 1568 = 2^5 * 7^2) becomes 1600.
    """
    best = 1 << max(0, (n - 1).bit_length())  # next power of two: always 5-smooth
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def causal_fft_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y[..., l] = sum_{j<=l} k[..., j] u[..., l-j] for u (B, H, L), k (H, L), by FFT in fp32.

    Any FFT length n >= 2L avoids wrap-around, so y[:L] does not depend on n;
    ``fft_size(2L)`` is used. Inputs are cast to fp32 first: under bf16
    autocast ``u`` arrives in bf16, which torch.fft does not take for most
    lengths, and a bf16 FFT of length 8192 would lose the kernel's tail anyway.
    """
    length = u.shape[-1]
    n = fft_size(2 * length)
    with torch.autocast(u.device.type, enabled=False):
        k_f = torch.fft.rfft(_at_least_fp32(k), n=n)
        u_f = torch.fft.rfft(_at_least_fp32(u), n=n)
        return torch.fft.irfft(u_f * k_f, n=n)[..., :length]


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
        k = self.kernel(u.shape[-1])  # (H, L), fp32
        # FFT of length >= 2L makes the circular convolution a causal linear one; fp32 throughout.
        y = causal_fft_conv(u, k)
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
