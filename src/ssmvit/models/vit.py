"""Vision Transformer for small images (the seed study's baseline).

Patch embedding by a strided conv, a CLS token, learned position embeddings,
pre-norm transformer blocks, and a linear head on the CLS token. Attention
goes through ``F.scaled_dot_product_attention`` so fused (flash /
memory-efficient) kernels run on GPU.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError

# The model registry's entry (ssmvit.models): how the config names it, what it reads, its settings.
NAME, LABEL, ORDER, INPUT_LAYOUT = "vit", "ViT", 0, "image"
DESCRIPTION = "the seed study's ViT: patch 4, embed 768, 8 heads, 8 layers, MLP 256"
SETTINGS = {  # JSON-schema properties of models.vit, with their defaults
    "lr": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 1.0e-4},
    "patch_size": {"type": "integer", "minimum": 1, "default": 4},
    "embed_dim": {"type": "integer", "minimum": 1, "default": 768},
    "depth": {"type": "integer", "minimum": 1, "default": 8},
    "num_heads": {"type": "integer", "minimum": 1, "default": 8},
    "mlp_dim": {"type": "integer", "minimum": 1, "default": 256},
    "dropout": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.1},
}


def build(n_channels: int, n_classes: int, image_size: int, **settings) -> nn.Module:
    return ViT(n_channels, n_classes, image_size, **settings)


def check(settings: dict, study: dict) -> None:
    """Settings that cannot build this model for the study, as one UserError line."""
    bad = [r for r in study["resolutions"] if r % settings["patch_size"]]
    if bad:
        raise UserError(f"models.vit.patch_size={settings['patch_size']} does not divide resolution(s) {bad}; "
                        "choose a patch size that divides every resolution")
    if settings["embed_dim"] % settings["num_heads"]:
        raise UserError("models.vit.embed_dim must be divisible by models.vit.num_heads")


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
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Input (B, C, H, W) float, output (B, n_classes) logits."""

    def __init__(self, n_channels: int, n_classes: int, image_size: int, patch_size: int = 4,
                 embed_dim: int = 768, depth: int = 8, num_heads: int = 8, mlp_dim: int = 256,
                 dropout: float = 0.1):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"patch size {patch_size} does not divide image size {image_size}")
        n_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(n_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_dim, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, n_classes)
        self._compiled_block = None  # set by compile_blocks
        self.use_compiled_blocks = False
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_weights)

    def compile_blocks(self, **compile_kwargs) -> None:
        """``torch.compile`` the transformer block instead of the whole model.

        The blocks are alike and share one compiled graph (their parameters are
        graph inputs), so compile time is that of one block. They run while
        ``use_compiled_blocks`` is true (``fastpath.compiled_blocks``).
        Idempotent; the state_dict is unchanged.
        """
        if self._compiled_block is None:
            self._compiled_block = torch.compile(_call_block, **compile_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = self.pos_drop(torch.cat([cls, x], dim=1) + self.pos_embed)
        run = self._compiled_block if self.use_compiled_blocks and self._compiled_block is not None else _call_block
        for block in self.blocks:
            x = run(block, x)
        return self.head(self.norm(x)[:, 0])


def _call_block(block: Block, x: torch.Tensor) -> torch.Tensor:
    """``block(x)``: the function ``ViT.compile_blocks`` compiles once for all blocks."""
    return block(x)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
