"""RAM and RAM++ in PyTorch, with the module names of the official checkpoints.

Architecture (Recognize Anything, Zhang et al. 2023; RAM++, Huang et al. 2023):

* ``visual_encoder``: Swin-B/L (``glimpse.tagging.swin``) -> ``[B, 1 + L, C]`` (pooled token first);
* ``image_proj``: ``Linear(C, 512)`` -> image embeddings ``[B, 1 + L, 512]``;
* ``label_embed``: the label queries, CLIP text embeddings — ``[num_classes, 512]`` for RAM,
  ``[num_classes * 51, 512]`` for RAM++ (51 descriptions per tag, re-weighted per image by the softmax of
  ``exp(reweight_scale) * <normalised pooled image token, description>``);
* ``wordvec_proj`` (``Linear(512, hidden)``, identity when hidden is 512) + ReLU -> queries ``[B, C', hidden]``;
* ``tagging_head``: BERT layers with cross-attention to the image embeddings and **no self-attention**
  between label queries (Query2Label), so each tag's logit depends only on its own query and the image;
* ``fc``: ``Linear(hidden, 1)`` -> logits ``[B, C']``; probabilities are ``sigmoid(logits)``.

Because queries never attend to each other, extra (open-set) queries can be appended to the closed set
without changing any closed-set logit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from glimpse.tagging.swin import SwinBackbone, SwinConfig

LABEL_DIM = 512
RAM_PLUS_DESCRIPTIONS = 51


@dataclass(frozen=True)
class RamConfig:
    """Shapes of a RAM / RAM++ model; the official checkpoints use the q2l defaults below."""

    swin: SwinConfig = field(default_factory=SwinConfig)
    num_classes: int = 4585
    plus: bool = False  # RAM++: label_embed holds ``descriptions`` rows per class + reweight_scale
    descriptions: int = 1
    hidden_size: int = 768
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 3072
    layer_norm_eps: float = 1e-12


class CrossSelfAttention(nn.Module):
    """Queries attend to image tokens: ``query`` from queries, ``key``/``value`` from 512-d image embeddings."""

    def __init__(self, hidden: int, heads: int, encoder_width: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(encoder_width, hidden)
        self.value = nn.Linear(encoder_width, hidden)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, queries: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(queries)), self._split(self.key(image)), self._split(self.value(image))
        # Same order as the reference BERT: scale after the product; the all-ones image mask adds zeros.
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        context = scores.softmax(dim=-1) @ v
        return context.permute(0, 2, 1, 3).reshape(*queries.shape[:-1], -1)


class DenseNorm(nn.Module):
    """``LayerNorm(dense(x) + residual)`` — BERT's output block (names ``dense``, ``LayerNorm``)."""

    def __init__(self, d_in: int, d_out: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class CrossAttention(nn.Module):
    def __init__(self, config: RamConfig) -> None:
        super().__init__()
        self.self = CrossSelfAttention(config.hidden_size, config.num_heads, LABEL_DIM)
        self.output = DenseNorm(config.hidden_size, config.hidden_size, config.layer_norm_eps)

    def forward(self, queries: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(queries, image), queries)


class Intermediate(nn.Module):
    def __init__(self, config: RamConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = nn.GELU()  # BERT's "gelu": the exact erf form

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class DecoderLayer(nn.Module):
    """Cross-attention + feed-forward; the BERT self-attention of these layers is deleted (Query2Label)."""

    def __init__(self, config: RamConfig) -> None:
        super().__init__()
        self.crossattention = CrossAttention(config)
        self.intermediate = Intermediate(config)
        self.output = DenseNorm(config.intermediate_size, config.hidden_size, config.layer_norm_eps)

    def forward(self, queries: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        attended = self.crossattention(queries, image)
        return self.output(self.intermediate(attended), attended)


class LayerStack(nn.Module):
    def __init__(self, config: RamConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_layers))


class TaggingHead(nn.Module):
    """``tagging_head.encoder.layer.{i}``: queries ``[B, C', hidden]`` x image ``[B, T, 512]`` -> same as queries."""

    def __init__(self, config: RamConfig) -> None:
        super().__init__()
        self.encoder = LayerStack(config)

    def forward(self, queries: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        for layer in self.encoder.layer:
            queries = layer(queries, image)
        return queries


class RamModel(nn.Module):
    """RAM (``config.plus`` false) or RAM++: pixels ``float32[B, 3, S, S]`` -> logits ``float32[B, C']``.

    ``C' = num_classes + open-set tags``. Open-set queries (``set_open_set``) are CLIP text embeddings:
    ``[n * k, 512]`` with ``k`` embeddings per tag (prompt templates), re-weighted per image like RAM++'s
    descriptions for RAM++, averaged (``k`` = 1 after averaging) for RAM.
    """

    def __init__(self, config: RamConfig) -> None:
        super().__init__()
        self.config = config
        self.visual_encoder = SwinBackbone(config.swin)
        self.image_proj = nn.Linear(config.swin.width, LABEL_DIM)
        self.label_embed = nn.Parameter(torch.zeros(config.num_classes * config.descriptions, LABEL_DIM))
        self.wordvec_proj: nn.Module = (
            nn.Identity() if config.hidden_size == LABEL_DIM else nn.Linear(LABEL_DIM, config.hidden_size)
        )
        self.tagging_head = TaggingHead(config)
        self.fc = nn.Linear(config.hidden_size, 1)
        if config.plus:
            self.reweight_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.register_buffer("open_embed", torch.zeros(0, LABEL_DIM), persistent=False)
        self.open_per_class = 1

    def set_open_set(self, embeddings: torch.Tensor | None) -> None:
        """Open-set queries ``float32[n, k, 512]`` (k embeddings per tag), or None to drop them."""
        if embeddings is None or embeddings.shape[0] == 0:
            self.open_embed = torch.zeros(0, LABEL_DIM)
            self.open_per_class = 1
            return
        n, k, _ = embeddings.shape
        if not self.config.plus and k > 1:
            # RAM has one query per tag: the normalised mean of the prompt embeddings.
            mean = embeddings.mean(dim=1)
            embeddings = (mean / mean.norm(dim=-1, keepdim=True))[:, None, :]
            k = 1
        self.open_embed = embeddings.reshape(n * k, LABEL_DIM).float().to(self.label_embed.device)
        self.open_per_class = k

    @property
    def num_outputs(self) -> int:
        return self.config.num_classes + self.open_embed.shape[0] // self.open_per_class

    def _reweight(self, pooled: torch.Tensor, embed: torch.Tensor, per_class: int) -> torch.Tensor:
        """RAM++: per image, a softmax over each tag's ``per_class`` embeddings -> ``[B, n, 512]``."""
        pooled = pooled / pooled.norm(dim=-1, keepdim=True)
        logits = self.reweight_scale.exp() * pooled @ embed.t()  # [B, n * k]
        weights = logits.view(pooled.shape[0], -1, per_class).softmax(dim=2)  # [B, n, k]
        return torch.einsum("bnk,nkd->bnd", weights, embed.view(-1, per_class, LABEL_DIM))

    def _queries(self, pooled: torch.Tensor, embed: torch.Tensor, per_class: int) -> torch.Tensor:
        if self.config.plus:
            raw = self._reweight(pooled, embed, per_class)
        else:
            raw = embed.unsqueeze(0).expand(pooled.shape[0], -1, -1)
        return torch.relu(self.wordvec_proj(raw))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        image = self.image_proj(self.visual_encoder(pixels))
        pooled = image[:, 0, :]
        queries = self._queries(pooled, self.label_embed, self.config.descriptions)
        if self.open_embed.shape[0]:
            queries = torch.cat([queries, self._queries(pooled, self.open_embed, self.open_per_class)], dim=1)
        return self.fc(self.tagging_head(queries, image)).squeeze(-1)
