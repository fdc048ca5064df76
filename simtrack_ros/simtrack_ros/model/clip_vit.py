"""CLIP ViT visual encoder with OpenAI CLIP's parameter names.

The layout (``conv1``, ``class_embedding``, ``positional_embedding``, ``ln_pre``,
``transformer.resblocks.{i}``, ``ln_post``, ``proj``) matches ``openai/CLIP``'s
``VisionTransformer``, so CLIP and SimTrack checkpoints load by name. It holds the parts SimTrack
uses (patch embedding, ``ln_pre``, the blocks, ``ln_post``); ``proj`` is kept for the checkpoint
layout only, and there is no CLIP image-embedding forward. Unlike CLIP, tokens are batch-first
throughout and attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`
on the packed ``in_proj`` weights (the same math as ``nn.MultiheadAttention``).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
import torch.nn.functional as F


class LayerNorm(nn.LayerNorm):
    """LayerNorm that computes in fp32 and casts back (CLIP's subclass, fp16/bf16 safe)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class QuickGELU(nn.Module):
    """CLIP's GELU approximation ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameters, batch-first.

    ``in_proj_weight`` stacks the q, k and v projections on dim 0, as in PyTorch's module,
    so its state dict loads into this one unchanged. No mask, no dropout.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f'width {width} is not divisible by heads {heads}')
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise like ``nn.MultiheadAttention`` (xavier-uniform, zero biases)."""
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over ``x`` of shape B×L×D; returns B×L×D."""
        batch, length, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = SelfAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ('c_fc', nn.Linear(width, 4 * width)),
            ('gelu', QuickGELU()),
            ('c_proj', nn.Linear(4 * width, width)),
        ]))
        self.ln_2 = LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of ``layers`` residual attention blocks (``resblocks``), batch-first."""

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(
            *[ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    """CLIP's image tower; ``input_resolution`` fixes the size of ``positional_embedding``.

    ``proj`` (CLIP's image-embedding projection) is unused: it is kept so that CLIP and official
    SimTrack checkpoints load strictly.
    """

    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int,
                 heads: int, output_dim: int) -> None:
        super().__init__()
        if input_resolution % patch_size:
            raise ValueError(
                f'input_resolution {input_resolution} is not a multiple of patch {patch_size}')
        self.grid = input_resolution // patch_size
        scale = width ** -0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def patch_embed(self, image: torch.Tensor) -> torch.Tensor:
        """Patch tokens of a B×3×H×W image, row-major: B×(H/p·W/p)×width."""
        return self.conv1(image).flatten(2).transpose(1, 2)

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``ln_pre``, the transformer and ``ln_post`` on every token of B×L×width."""
        return self.ln_post(self.transformer(self.ln_pre(tokens)))
