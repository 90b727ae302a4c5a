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

# The model registry's entry (ssmvit.models): how the config names it, what it reads, its settings.
NAME, LABEL, ORDER, INPUT_LAYOUT = "s4d", "S4D", 1, "sequence"
DESCRIPTION = "the seed study's S4D: d_model 128 (grayscale) / 256 (RGB), 4 layers, d_state 64"
SETTINGS = {  # JSON-schema properties of models.s4d, with their defaults
    "lr": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 1.0e-2},
    "ssm_lr": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 1.0e-3,
               "description": "step, A and C train with min(lr, ssm_lr) and no weight decay, as in the S4 reference"},
    "d_model_grayscale": {"type": "integer", "minimum": 1, "default": 128},
    "d_model_rgb": {"type": "integer", "minimum": 1, "default": 256},
    "n_layers": {"type": "integer", "minimum": 1, "default": 4},
    "d_state": {"type": "integer", "minimum": 2, "multipleOf": 2, "default": 64},
    "dropout": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.1},
}
OPTIMIZER_SETTINGS = ("lr", "ssm_lr")  # read by training, not by the model


def model_kwargs(settings: dict, n_channels: int) -> dict:
    """The constructor's keywords: the width for this many channels (the seed used 128 gray, 256 RGB)."""
    kw = {k: v for k, v in settings.items() if k not in OPTIMIZER_SETTINGS}
    d_gray, d_rgb = kw.pop("d_model_grayscale"), kw.pop("d_model_rgb")
    return kw | {"d_model": d_gray if n_channels == 1 else d_rgb}


def build(n_channels: int, n_classes: int, image_size: int, **settings) -> nn.Module:
    return S4DClassifier(n_channels, n_classes, **settings)


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in fp32 if it is in a lower precision (bf16/fp16 under autocast), else unchanged (fp64 stays)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def mark_ssm_param(p: nn.Parameter) -> nn.Parameter:
    """Mark a parameter for the SSM parameter group (own lr, no weight decay)."""
    p._ssm_param = True  # read by training.build_optimizer
    return p


def _powers(x: torch.Tensor, y: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Re, Im) of exp((x + iy) * pos): (H, N/2) x (P,) -> two (H, N/2, P) tensors."""
    decay = torch.exp(x.unsqueeze(-1) * pos)
    angle = y.unsqueeze(-1) * pos
    return decay * torch.cos(angle), decay * torch.sin(angle)


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

    def discretised(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, y, w_re, w_im), each (H, N/2), fp32 (fp64 for a double model): dtA = x + iy and W = C'.

        The kernel is K[l] = 2 Re(W exp(dtA l)). Real arithmetic: no complex
        tensors, so inductor can fuse it. Call under autocast disabled.
        """
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
        return x, y, c_re * q_re - c_im * q_im, c_re * q_im + c_im * q_re

    def forward(self, length: int) -> torch.Tensor:
        """The (H, L) kernel in fp32 (fp64 for a double model), in real arithmetic.

        Same formula as the complex one (``complex_kernel`` below keeps it for
        reference and tests): with dtA = x + iy,
        exp(dtA * l) = e^{x l} (cos(y l) + i sin(y l)) and
        2 Re(C' exp(dtA l)) = 2 e^{x l} (Re C' cos(y l) - Im C' sin(y l)).
        Autocast is switched off: the kernel sums decaying oscillations over
        thousands of steps and is computed in fp32 whatever the surrounding precision.
        """
        with torch.autocast(self.log_dt.device.type, enabled=False):
            x, y, w_re, w_im = self.discretised()
            pos = torch.arange(length, device=x.device, dtype=x.dtype)
            p_re, p_im = _powers(x, y, pos)  # (H, N/2, L)
            vander = torch.cat([p_re, p_im], dim=1)  # (H, N, L)
            w = torch.cat([w_re, -w_im], dim=1).unsqueeze(1)  # (H, 1, N)
            return 2 * torch.bmm(w, vander).squeeze(1)  # (H, L)

    def chunk_operators(self, chunk: int, n_chunks: int) -> dict[str, torch.Tensor]:
        """The matrices of ``chunked_causal_conv`` for chunks of length T = ``chunk`` (fp32, autocast off).

        With lambda = exp(dtA) and W = C' (K[l] = 2 Re(W lambda^l)), per channel h:
        ``toeplitz_t`` (H, T, T): [t, s] = K[s - t] for s >= t, else 0 (within a chunk, y = u @ toeplitz_t);
        ``state_in`` (H, T, N): [t] = (Re, Im) lambda^(T-1-t) (a chunk's contribution to the state at its end);
        ``carry`` (H * N/2, 2C, 2C): the real 2x2-block form of S_prev[c] = sum_{c' < c} lambda^(T (c-1-c')) X[c'],
        the state entering chunk c from all earlier chunks;
        ``state_out`` (H, N, T): [:, s] = (2 Re, -2 Im)(W lambda^(s+1)) (the state's effect on position s of the next chunk).
        All powers are of |lambda| < 1 and non-negative, so nothing overflows.
        """
        with torch.autocast(self.log_dt.device.type, enabled=False):
            x, y, w_re, w_im = self.discretised()
            h, n2 = x.shape
            dev, dt = x.device, x.dtype
            t = torch.arange(chunk, device=dev, dtype=dt)
            # Banded matrices come from sliding windows over a zero-padded sequence (unfold), not
            # from index comparisons: no masks, and nothing for inductor's index simplifier to trip on.
            k = self.forward(chunk)  # (H, T)
            k_pad = torch.cat([k.new_zeros(h, chunk - 1), k], dim=1)  # (H, 2T-1): k_pad[T-1+j] = K[j]
            toeplitz_t = k_pad.unfold(1, chunk, 1).flip(1)  # [t, s] = k_pad[T-1-t+s] = K[s-t], 0 for s < t
            in_re, in_im = _powers(x, y, chunk - 1 - t)  # (H, N/2, T)
            state_in = torch.cat([in_re, in_im], dim=1).transpose(1, 2)  # (H, T, N)
            out_re, out_im = _powers(x, y, t + 1)
            w_re, w_im = w_re.unsqueeze(-1), w_im.unsqueeze(-1)
            state_out = 2 * torch.cat([w_re * out_re - w_im * out_im, -(w_re * out_im + w_im * out_re)], dim=1)
            # carry[c, c'] = lambda^(T (c-1-c')) for c' < c: windows over (0 x C, lambda^0, ..., lambda^(T (C-1)))
            p_re, p_im = _powers(x, y, torch.arange(n_chunks, device=dev, dtype=dt) * chunk)  # (H, N/2, C)
            z = p_re.new_zeros(h, n2, n_chunks)
            g_re = torch.cat([z, p_re], dim=2).unfold(2, n_chunks, 1)[:, :, :n_chunks].flip(2).transpose(2, 3)
            g_im = torch.cat([z, p_im], dim=2).unfold(2, n_chunks, 1)[:, :, :n_chunks].flip(2).transpose(2, 3)
            g_re, g_im = g_re.reshape(h * n2, n_chunks, n_chunks), g_im.reshape(h * n2, n_chunks, n_chunks)
            carry = torch.cat([torch.cat([g_re, -g_im], dim=2), torch.cat([g_im, g_re], dim=2)], dim=1)
            return {"toeplitz_t": toeplitz_t, "state_in": state_in, "carry": carry, "state_out": state_out}

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


def conv_chunk_size(length: int, max_chunk: int = 256) -> int:
    """Chunk length T of ``chunked_causal_conv`` for sequence length L.

    The largest multiple of 16 (tensor-core friendly) that divides L and is at
    most ``max_chunk`` (256 for L = 4096, 112 for L = 784); L itself if L <= 16;
    otherwise ``max_chunk`` and the sequence is zero-padded at its end.
    """
    if length <= 16:
        return length
    for t in range(min(max_chunk, length) // 16 * 16, 15, -16):
        if length % t == 0:
            return t
    return min(max_chunk, length)


def chunked_causal_conv(u: torch.Tensor, kernel: S4DKernel, chunk: int | None = None) -> torch.Tensor:
    """The causal convolution of ``causal_fft_conv`` with the S4D kernel, by chunks, for u in (H, B, L) layout.

    The same function computed another way (as in the S4/Mamba-2 "chunked" or
    "state space dual" form): the sequence is cut into C chunks of T; within
    a chunk the convolution is a T x T Toeplitz matmul; what earlier chunks
    contribute passes through the SSM's N/2 complex states at chunk ends (the
    kernel is a sum of N/2 decaying exponentials, so the off-diagonal blocks
    of the L x L Toeplitz matrix have rank N). Everything is batched matmuls
    over the channel h (tensor cores; bf16 under autocast, fp32 accumulation)
    plus a small carry matmul: no FFT, no complex tensors, no (B, H, 2L)
    spectra. Exact in exact arithmetic (tests: equal to the FFT convolution in fp64).
    Returns (H, B, L) in the matmul dtype.
    """
    h, b, length = u.shape
    t = chunk or conv_chunk_size(length)
    c = -(-length // t)
    if c * t != length:  # causal: zeros after the end change nothing before it
        u = torch.nn.functional.pad(u, (0, c * t - length))
    ops = kernel.chunk_operators(t, c)
    n = ops["state_in"].shape[-1]
    uc = u.reshape(h, b * c, t)
    x = torch.bmm(uc, ops["state_in"])  # (H, B*C, N): each chunk's own state at its end
    # (H, B, C, 2, N/2) -> (H*N/2, 2C, B): the carry mixes chunks of one (h, n) state only
    xs = x.view(h, b, c, 2, n // 2).permute(0, 4, 3, 2, 1).reshape(h * (n // 2), 2 * c, b)
    s_prev = torch.bmm(ops["carry"].to(xs.dtype), xs)  # states entering each chunk
    s_prev = s_prev.view(h, n // 2, 2, c, b).permute(0, 4, 3, 2, 1).reshape(h, b * c, n)
    y = torch.baddbmm(torch.bmm(s_prev, ops["state_out"]), uc, ops["toeplitz_t"])  # (H, B*C, T)
    return y.view(h, b, c * t)[..., :length]


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

    def forward_hbl(self, u: torch.Tensor) -> torch.Tensor:
        """``forward`` for u in (H, B, L) layout, convolving by chunks (``chunked_causal_conv``).

        Same parameters and the same function; the 1x1 convolution is one
        (2H, H) x (H, B*L) matmul and the dropout mask is drawn with
        ``Dropout1d``'s (B, H, 1) shape.
        """
        y = chunked_causal_conv(u, self.kernel)
        y = y + u * self.D.view(-1, 1, 1)
        y = _channel_dropout(self.activation(y), self.dropout)
        conv = self.output_linear[0]
        h, b, length = y.shape
        z = torch.addmm(conv.bias.unsqueeze(-1), conv.weight.squeeze(-1), y.reshape(h, b * length))
        a, gate = z.chunk(2, dim=0)  # GLU over channels, as GLU(dim=-2) on (B, 2H, L)
        return (a * torch.sigmoid(gate)).view(h, b, length)


class S4DClassifier(nn.Module):
    """Input (B, L, C) raster-scanned pixels, output (B, n_classes) logits.

    Linear encoder of the pixel channels, residual S4D blocks with post-LayerNorm
    and dropout, mean pooling over the sequence, linear decoder.

    ``conv_algorithm`` chooses how the S4D convolution is computed, not what:
    ``"fft"`` (default; (B, H, L) layout, FFT of length >= 2L in fp32, the
    reference) or ``"chunked"`` ((H, B, L) layout throughout, chunked
    matmuls; ``chunked_causal_conv``), which the GPU fast path selects
    (``train.fast_path.s4d_chunked_conv``). Parameters and checkpoints are the same.

    ``keep_residual_dtype`` (set by ``train.fast_path.bf16_residual``): each
    block's output, which LayerNorm computes in fp32, is stored in the dtype
    of the block's input. Under bf16 autocast the encoder's matmul gives
    bf16, so the residual stream, and what backward keeps of it, is bf16:
    half the bytes per stored residual tensor, in a 64x64 step that is bound
    by memory traffic. Without autocast the
    stream is fp32 either way, so the flag changes nothing there.
    """

    CONV_ALGORITHMS = ("fft", "chunked")

    def __init__(self, n_channels: int, n_classes: int, d_model: int = 128, n_layers: int = 4,
                 d_state: int = 64, dropout: float = 0.1):
        super().__init__()
        self.encoder = nn.Linear(n_channels, d_model)
        self.layers = nn.ModuleList(S4DLayer(d_model, d_state, dropout) for _ in range(n_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.dropouts = nn.ModuleList(nn.Dropout1d(dropout) if dropout > 0 else nn.Identity() for _ in range(n_layers))
        self.decoder = nn.Linear(d_model, n_classes)
        self.conv_algorithm = "fft"
        self.keep_residual_dtype = False
        self._compiled_blocks = None  # set by compile_blocks
        self.use_compiled_blocks = False  # fastpath.compiled_blocks switches it per call

    def compile_blocks(self, **compile_kwargs) -> None:
        """``torch.compile`` the residual block (S4D layer, dropout, residual, LayerNorm) instead of the whole model.

        The 4 blocks share one compiled graph (their parameters are graph
        inputs), so compile time is that of one block, and the encoder,
        pooling and decoder (which differ with channels and classes) stay
        eager. They run while ``use_compiled_blocks`` is true
        (``fastpath.compiled_blocks``). Idempotent. The state_dict is unchanged.
        """
        if self._compiled_blocks is None:
            self._compiled_blocks = {"fft": torch.compile(_block_bhl, **compile_kwargs),
                                     "chunked": torch.compile(_block_hbl, **compile_kwargs)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv_algorithm not in self.CONV_ALGORITHMS:
            raise ValueError(f"unknown S4D conv_algorithm {self.conv_algorithm!r}; valid: {', '.join(self.CONV_ALGORITHMS)}")
        hbl = self.conv_algorithm == "chunked"
        block = {"fft": _block_bhl, "chunked": _block_hbl}[self.conv_algorithm]
        if self.use_compiled_blocks and self._compiled_blocks is not None:
            block = self._compiled_blocks[self.conv_algorithm]
        if hbl:
            # (H, B, L) layout: the channel is the matmul batch of the convolution, so no transposes.
            # The encoder as (H, C) x (C, B*L) lands there without a transpose of the wide tensor.
            b, length, _ = x.shape
            x = torch.addmm(self.encoder.bias.unsqueeze(-1), self.encoder.weight, x.reshape(b * length, -1).t())
            x = x.view(-1, b, length)
        else:
            x = self.encoder(x).transpose(-1, -2)  # (B, H, L)
        for layer, norm, dropout in zip(self.layers, self.norms, self.dropouts):
            x = block(layer, norm, dropout, x, self.keep_residual_dtype)
        pooled = x.mean(dim=-1)  # (H, B) or (B, H)
        return self.decoder(pooled.t() if hbl else pooled)


def _block_bhl(layer: S4DLayer, norm: nn.LayerNorm, dropout: nn.Module, x: torch.Tensor,
               keep_dtype: bool = False) -> torch.Tensor:
    """One residual block on x in (B, H, L): S4D layer (FFT convolution), dropout, residual, post-LayerNorm.

    LayerNorm computes in fp32. With ``keep_dtype`` (``S4DClassifier.keep_residual_dtype``) the residual sum is
    taken in fp32 and LayerNorm's output is stored in x's dtype; without it, both are as they always were (the sum
    in the wider of z's and x's dtypes, the output in fp32).
    """
    z = dropout(layer(x))
    out = norm(_residual_sum(z, x, keep_dtype).transpose(-1, -2)).transpose(-1, -2)
    return out.to(x.dtype) if keep_dtype else out


def _block_hbl(layer: S4DLayer, norm: nn.LayerNorm, dropout: nn.Module, x: torch.Tensor,
               keep_dtype: bool = False) -> torch.Tensor:
    """``_block_bhl`` on x in (H, B, L) layout (chunked convolution); the same function."""
    z = _channel_dropout(layer.forward_hbl(x), dropout)
    out = _layer_norm_dim0(_residual_sum(z, x, keep_dtype), norm)
    return out.to(x.dtype) if keep_dtype else out


def _residual_sum(z: torch.Tensor, x: torch.Tensor, in_fp32: bool) -> torch.Tensor:
    """z + x; ``in_fp32``: in at least fp32, so that an eager block adds two bf16 tensors as inductor's fused one does."""
    return _at_least_fp32(z) + _at_least_fp32(x) if in_fp32 else z + x


def _channel_dropout(x: torch.Tensor, dropout: nn.Module) -> torch.Tensor:
    """``Dropout1d`` (one mask per sample and channel, shared along the sequence) for x in (H, B, L) layout."""
    if not isinstance(dropout, nn.Dropout1d) or not dropout.training or dropout.p == 0:
        return x
    keep = 1.0 - dropout.p
    # drawn in Dropout1d's (B, H, 1) shape, then laid out as (H, B, 1)
    mask = torch.empty((x.shape[1], x.shape[0], 1), device=x.device, dtype=x.dtype).bernoulli_(keep).div_(keep)
    return x * mask.transpose(0, 1)


def _layer_norm_dim0(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """``norm`` over the channel dimension of x in (H, B, L) layout, in at least fp32 (as LayerNorm under autocast)."""
    x = _at_least_fp32(x)
    with torch.autocast(x.device.type, enabled=False):
        var, mean = torch.var_mean(x, dim=0, unbiased=False, keepdim=True)
        w, b = norm.weight.view(-1, 1, 1), norm.bias.view(-1, 1, 1)
        return (x - mean) * torch.rsqrt(var + norm.eps) * w + b
