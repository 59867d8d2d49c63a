"""Model families: one row per kind of CLIP-like model glimpse runs, holding every rule that differs.

A *family* is an architecture plus its training recipe: the transformers class that loads it, the
``config.json`` ``model_type`` that names it, the defaults of its config and image-processor classes, how
its text is tokenised, how its similarities become probabilities and how it is fine-tuned. The checkpoint
reader (``glimpse.checkpoints``), the torch backend and its ONNX export, the immich reader, zero-shot
scoring and training all read their per-family rules from ``FAMILIES``; no module branches on a family
name.

Adding a family is adding one ``ModelFamily`` row to ``_ROWS`` (its ``name`` becomes ``ModelSpec.family``
and the ``family`` field of ``spec.json``). Fill the columns from the family's transformers config and
image-processor classes (their defaults apply when a checkpoint's files omit a key). Only a rule that no
column expresses yet needs a new column, read by the one module that applies it. A row's tests: add a tiny
checkpoint of it to ``tests/tiny_models.py`` and it joins the parity tests of ``tests/test_models.py``.

Importing this module imports nothing but the standard library: it is consulted on the light query path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from glimpse.errors import ModelError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ModelFamily:
    """The rules of one model family (see the module docstring for how to add one).

    Checkpoint (``config.json``) defaults, used when a key is absent:

    * ``dim_key``: where the embedding width is: ``"projection_dim"`` (a projection head) or
      ``"vision_hidden_size"`` (no projection: the vision tower's ``hidden_size``); ``default_dim`` if absent.
    * ``default_context_length``: ``text_config.max_position_embeddings`` when absent (a tokenizer's smaller
      ``model_max_length`` still wins).
    * ``default_log_logit_scale``: ``logit_scale_init_value`` when absent and the weights hold no trained
      ``logit_scale`` (stored as a log).
    * ``default_logit_bias``: ``logit_bias_init_value`` when absent and the weights hold no ``logit_bias``;
      only read for sigmoid families (softmax families have no bias).
    * ``languages``: what a checkpoint of this family outside the built-in registry is assumed to read.

    * ``context_offset``: positions the text tower reserves before the first token (XLM-R / RoBERTa
      count positions from ``padding_idx + 1``, so ``max_position_embeddings`` 514 holds 512 tokens).

    Image processor (``preprocessor_config.json``) defaults: ``processor_resize`` ``"shortest"`` (size
    ``{"shortest_edge": 224}``), ``"squash"`` (224x224) or ``"naflex"`` (SigLIP2's native-aspect patches:
    resized to fit ``max_num_patches`` 256 patches of ``patch_size`` 16, see ``glimpse.preprocess``),
    ``processor_crop`` (``do_center_crop``), ``processor_mean`` / ``processor_std``, ``processor_resample``
    (PIL's number: 3 bicubic, 2 bilinear).

    Text: ``text_padding`` ``"longest"`` (pad to the batch's longest text) or ``"max_length"`` (always the
    context length: the model pools a fixed position); ``text_attention_mask`` whether the text tower is fed
    one (SigLIP was trained without); ``slow_tokenizer`` how a checkpoint without a fast tokenizer becomes
    ``tokenizer.json`` at ONNX export: ``"transformers"`` (its converter) or ``"siglip"`` (SentencePiece with
    SigLIP's lower-casing, punctuation-stripping canonicaliser). ``text_pools_eot``: the text tower is causal
    and pools its end-of-text position (CLIP), so the positions after a text's end-of-text token change nothing:
    padding to the longest text of a batch gives exactly the vectors of padding to the context length, and a
    fixed-length ONNX text graph (immich's ``[1, 77]``) may be cut to the batch's length
    (``glimpse.encoders.shorten``). False where padding is read (SigLIP pools a fixed position; BERT / XLM-R
    towers attend both ways and pool the first token or the mean).

    Scores and training: ``loss`` ``"softmax"`` (CLIP: ``softmax(scale * cos)`` over classes, symmetric
    cross-entropy training) or ``"sigmoid"`` (SigLIP: ``sigmoid(scale * cos + bias)`` per class, pairwise
    sigmoid training); ``logit_scale_cap``: the largest ``exp(logit_scale)`` training allows (``None``: no cap).

    immich / open_clip ONNX directories carry no ``model_type``: a directory is of this family when its
    ``config.json`` has one of ``open_clip_config_keys`` (the config decides: a renamed folder keeps its family;
    among several such rows the longest matching name wins), else when its model name contains one of
    ``open_clip_names`` (case-insensitive; the longest match wins); otherwise it is ``clip``.
    ``open_clip_logit_scale``: a softmax family's scale as is (open_clip configs hold only an init value, CLIP's
    trained temperature is 100); a sigmoid family's when its config has no ``init_logit_scale``.
    """

    name: str
    model_types: tuple[str, ...]
    model_class: str
    dim_key: Literal["projection_dim", "vision_hidden_size"]
    default_dim: int
    default_context_length: int
    default_log_logit_scale: float
    default_logit_bias: float | None
    languages: tuple[str, ...]
    processor_resize: Literal["shortest", "squash", "naflex"]
    processor_crop: bool
    processor_mean: tuple[float, float, float]
    processor_std: tuple[float, float, float]
    text_padding: Literal["longest", "max_length"]
    text_attention_mask: bool
    slow_tokenizer: Literal["transformers", "siglip"]
    loss: Literal["softmax", "sigmoid"]
    logit_scale_cap: float | None
    open_clip_names: tuple[str, ...] = ()
    open_clip_config_keys: tuple[str, ...] = ()
    open_clip_logit_scale: float = 100.0
    context_offset: int = 0
    processor_resample: int = 3
    text_pools_eot: bool = False

    @property
    def sigmoid(self) -> bool:
        """True for families trained with the pairwise sigmoid loss (they have a logit bias)."""
        return self.loss == "sigmoid"

    def dim_of(self, config: Mapping[str, Any]) -> int:
        """The embedding width of a checkpoint of this family from its ``config.json``."""
        if self.dim_key == "vision_hidden_size":
            return int((config.get("vision_config") or {}).get("hidden_size", self.default_dim))
        return int(config.get("projection_dim", self.default_dim))

    def processor_size(self) -> dict[str, int]:
        """The image processor's default ``size`` (the form its class writes)."""
        if self.processor_resize == "naflex":
            return {}  # NaFlex has no size: it fits max_num_patches
        return {"height": 224, "width": 224} if self.processor_resize == "squash" else {"shortest_edge": 224}


# What CLIP-recipe rows share: OpenAI's image processor defaults and text/loss rules.
_CLIP_RECIPE: dict[str, Any] = {
    "dim_key": "projection_dim", "default_dim": 512, "default_context_length": 77,
    "default_log_logit_scale": 2.6592, "default_logit_bias": None,
    "processor_resize": "shortest", "processor_crop": True, "processor_mean": OPENAI_MEAN, "processor_std": OPENAI_STD,
    "text_padding": "longest", "text_attention_mask": True, "slow_tokenizer": "transformers",
    "loss": "softmax", "logit_scale_cap": 100.0,
}

_ROWS: tuple[ModelFamily, ...] = (
    ModelFamily(name="clip", model_types=("clip",), model_class="CLIPModel", languages=("en",), text_pools_eot=True,
                **_CLIP_RECIPE),
    ModelFamily(name="chinese_clip", model_types=("chinese_clip",), model_class="ChineseCLIPModel",
                languages=("zh", "en"), **_CLIP_RECIPE),
    # SigLIP pools the last text position, so it was trained on fixed-length text and without a mask.
    ModelFamily(name="siglip", model_types=("siglip",), model_class="SiglipModel", languages=("en",),
                dim_key="vision_hidden_size", default_dim=768, default_context_length=64,
                default_log_logit_scale=math.log(10), default_logit_bias=-10.0,
                processor_resize="squash", processor_crop=False, processor_mean=(0.5, 0.5, 0.5),
                processor_std=(0.5, 0.5, 0.5), text_padding="max_length", text_attention_mask=False,
                slow_tokenizer="siglip", loss="sigmoid", logit_scale_cap=None,
                open_clip_names=("siglip",), open_clip_config_keys=("init_logit_bias",), open_clip_logit_scale=10.0),
    # SigLIP2 NaFlex (Siglip2Model): native-aspect patches with a patch mask. Fixed-resolution SigLIP2
    # checkpoints are model_type "siglip" (SiglipModel + a Gemma tokenizer) and read as the row above.
    # Text as SigLIP: padded to 64 and, as big_vision trained it (pooling the last position) and as open_clip /
    # immich run SigLIP2, without the attention mask Siglip2Processor's tokenizer also returns.
    # No open_clip names: an immich/open_clip "SigLIP2" tower is a fixed-resolution one, the siglip row.
    ModelFamily(name="siglip2", model_types=("siglip2",), model_class="Siglip2Model", languages=("en",),
                dim_key="vision_hidden_size", default_dim=768, default_context_length=64,
                default_log_logit_scale=math.log(10), default_logit_bias=-10.0,
                processor_resize="naflex", processor_crop=False, processor_mean=(0.5, 0.5, 0.5),
                processor_std=(0.5, 0.5, 0.5), processor_resample=2, text_padding="max_length",
                text_attention_mask=False, slow_tokenizer="transformers", loss="sigmoid", logit_scale_cap=None),
    # AltCLIP: CLIP's vision tower and image processor, an XLM-R text tower (positions start at 2).
    ModelFamily(name="altclip", model_types=("altclip",), model_class="AltCLIPModel", languages=("en", "zh"),
                context_offset=2, **{**_CLIP_RECIPE, "default_dim": 768, "default_context_length": 514}),
)

FAMILIES: dict[str, ModelFamily] = {row.name: row for row in _ROWS}
DEFAULT_FAMILY = "clip"  # training from scratch builds one; an immich directory without a family hint is one
_BY_MODEL_TYPE: dict[str, ModelFamily] = {t: row for row in _ROWS for t in row.model_types}


def get_family(name: str) -> ModelFamily:
    """The family called ``name`` (``ModelSpec.family``); ``ModelError`` when glimpse has no such family."""
    row = FAMILIES.get(name)
    if row is None:
        raise ModelError(f"unknown model family {name!r}; expected one of {sorted(FAMILIES)}")
    return row


def family_of_model_type(model_type: Any) -> ModelFamily | None:
    """The family of a transformers ``config.json`` ``model_type``, or ``None`` when glimpse has none."""
    return _BY_MODEL_TYPE.get(str(model_type))


def supported_model_types() -> list[str]:
    """Every ``model_type`` glimpse loads, sorted (for error messages)."""
    return sorted(_BY_MODEL_TYPE)


def model_classes() -> list[str]:
    """The transformers classes of the families, in table order (for error messages)."""
    return [row.model_class for row in _ROWS]


def family_of_open_clip(config: Mapping[str, Any], name: str) -> ModelFamily:
    """The family of an immich / open_clip model from its ``config.json`` and model ``name`` (see ``ModelFamily``)."""
    label = name.lower()
    # The config decides (a renamed folder must not change the family); the name only breaks ties between
    # rows the config admits, or decides when no row's config key is present.
    by_config = [row for row in _ROWS if any(key in config for key in row.open_clip_config_keys)]
    best: tuple[int, ModelFamily] | None = None
    for row in by_config or _ROWS:
        hits = [len(hint) for hint in row.open_clip_names if hint in label]
        score = max(hits, default=0 if by_config else -1)
        if score >= 0 and (best is None or score > best[0]):
            best = (score, row)
    return best[1] if best else FAMILIES[DEFAULT_FAMILY]
