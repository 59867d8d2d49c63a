"""The Swin Transformer image backbone of RAM / RAM++, with the parameter names of the official checkpoints.

transformers' ``SwinModel`` computes the same function, but its parameter names changed between transformers
4 and 5 (``attention.self.query`` -> ``q_proj``) and its fused/split q, k, v layout differs from the official
``qkv``; a strict loader on top of it would break with every transformers release. This module keeps the
official names (``patch_embed.proj``, ``layers.{i}.blocks.{j}.attn.qkv``, ``layers.{i}.downsample.reduction``,
``norm`` …) and the official operation order (q scaled before ``q @ k^T``), so an official state dict loads
without any renaming and the outputs match the reference to float rounding.

Output of ``SwinBackbone.forward``: ``float32[B, 1 + L, C]`` — the average-pooled token first, then the
``L = (image_size / 32)^2`` final patch tokens, ``C = embed_dim * 8``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class SwinConfig:
    """Shape of a Swin backbone; RAM uses Swin-B (128, heads 4..32) and Swin-L (192, heads 6..48)."""

    image_size: int = 384
    embed_dim: int = 192
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (6, 12, 24, 48)
    window_size: int = 12
    patch_size: int = 4
    mlp_ratio: float = 4.0

    @property
    def width(self) -> int:
        """Channels of the output tokens."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``[B, H, W, C]`` -> ``[B * nW, window, window, C]``."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window, window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """``[B * nW, window, window, C]`` -> ``[B, H, W, C]``."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, h, w, c)


def relative_position_index(window: int) -> torch.Tensor:
    """``int64[window^2, window^2]``: index into the ``(2w-1)^2`` bias table for each token pair."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += window - 1
    rel[:, :, 1] += window - 1
    rel[:, :, 0] *= 2 * window - 1
    return rel.sum(-1)


def shifted_window_mask(resolution: int, window: int, shift: int) -> torch.Tensor:
    """``float32[nW, window^2, window^2]``: -100 between tokens that were not neighbours before the shift."""
    img = torch.zeros((1, resolution, resolution, 1))
    spans = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    region = 0
    for hs in spans:
        for ws in spans:
            img[:, hs, ws, :] = region
            region += 1
    windows = window_partition(img, window).view(-1, window * window)
    mask = windows.unsqueeze(1) - windows.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside one window, with a learned relative position bias."""

    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        self.window, self.heads = window, heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        # Derived from the window size; the official loader drops it from checkpoints too.
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x``: ``[B * nW, N, C]`` with ``N = window^2``; ``mask``: ``[nW, N, N]`` or None."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.heads, n, n)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """(Shifted-)window attention + MLP, both pre-norm residual. Input/output ``[B, R*R, C]``."""

    def __init__(self, dim: int, resolution: int, heads: int, window: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        if resolution <= window:  # the window covers the whole map: no shift (as the reference)
            window, shift = resolution, 0
        self.resolution, self.window, self.shift = resolution, window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(resolution, window, shift) if shift > 0 else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, c = x.shape
        r, w, s = self.resolution, self.window, self.shift
        shortcut = x
        x = self.norm1(x).view(b, r, r, c)
        if s > 0:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
        windows = self.attn(window_partition(x, w).view(-1, w * w, c), self.attn_mask)
        x = window_reverse(windows.view(-1, w, w, c), w, r, r)
        if s > 0:
            x = torch.roll(x, shifts=(s, s), dims=(1, 2))
        x = shortcut + x.reshape(b, length, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens -> one token of twice the channels: ``[B, R*R, C]`` -> ``[B, R*R/4, 2C]``."""

    def __init__(self, resolution: int, dim: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        r = self.resolution
        x = x.view(b, r, r, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class SwinStage(nn.Module):
    def __init__(self, dim: int, resolution: int, depth: int, heads: int, window: int, mlp_ratio: float,
                 downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio)
            for i in range(depth)
        )
        self.downsample = PatchMerging(resolution, dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class SwinBackbone(nn.Module):
    """``float32[B, 3, S, S]`` -> ``float32[B, 1 + (S/32)^2, C]`` (pooled token first), as RAM's encoder."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config.patch_size, config.embed_dim)
        resolution = config.image_size // config.patch_size
        stages = []
        for i, (depth, heads) in enumerate(zip(config.depths, config.num_heads, strict=True)):
            last = i == len(config.depths) - 1
            stages.append(SwinStage(config.embed_dim * 2**i, resolution // 2**i, depth, heads, config.window_size,
                                    config.mlp_ratio, downsample=not last))
        self.layers = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(config.width)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixels)
        for stage in self.layers:
            x = stage(x)
        x = self.norm(x)
        return torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)
