"""Loading official RAM / RAM++ checkpoints strictly, their tag files, and the RAM tagger.

Checkpoints (``ram_swin_large_14m.pth``, ``ram_plus_swin_large_14m.pth``, Swin-B variants) are
``{"model": state_dict}``. The loader reads them with ``torch.load(weights_only=True)`` (no pickled code
runs), infers every shape from the tensors (Swin-B/L, window 7 -> 224 px / 12 -> 384 px, RAM vs RAM++), and
accounts for every key:

* ``vision_multi.*`` is renamed ``tagging_head.*`` (older checkpoints), as the reference loader does;
* ``*.relative_position_index`` / ``*.attn_mask`` are derived buffers: they are recomputed and checked equal;
* ``tag_encoder.*`` / ``text_decoder.*`` are RAM's Tag2Text captioning branch, not used for tags: reported
  as ignored (counted), never silently;
* anything else must load into the model; a key that does not is an error naming it (strict).

Tag files are read from next to the checkpoint (``ram_tag_list.txt``, ``ram_tag_list_chinese.txt``,
``ram_tag_list_threshold.txt``) or from paths the user gives; a missing one is an error naming the file.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glimpse.errors import ModelError, ModelNotFoundError, UserInputError
from glimpse.spec import Preprocess
from glimpse.tagging.base import Tagger, Vocabulary, sigmoid

if TYPE_CHECKING:
    import torch

    from glimpse.encoders.base import Encoder
    from glimpse.tagging.ram_model import RamConfig, RamModel

TAG_LIST = "ram_tag_list.txt"
TAG_LIST_CHINESE = "ram_tag_list_chinese.txt"
TAG_THRESHOLDS = "ram_tag_list_threshold.txt"
DEFAULT_THRESHOLD = 0.68  # the reference's default for classes the threshold file does not list
OPEN_SET_THRESHOLD = 0.5  # the reference's threshold for open-set (unseen) categories
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WINDOW_TO_IMAGE_SIZE = {7: 224, 12: 384}
IGNORED_PREFIXES = {
    "tag_encoder.": "Tag2Text image-tag interaction encoder (captioning only)",
    "text_decoder.": "Tag2Text caption decoder (captioning only)",
}
_DERIVED = re.compile(r"\.(relative_position_index|attn_mask)$")
_MIB = 1 << 20


@dataclass
class LoadReport:
    """What a strict load did with each checkpoint key."""

    variant: str  # "ram" or "ram_plus"
    backbone: str  # "swin_b", "swin_l" or "swin(embed_dim=…)"
    image_size: int
    num_classes: int
    loaded: int = 0
    derived_checked: int = 0
    ignored: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def ram_preprocess(image_size: int) -> Preprocess:
    """The reference transform: RGB, resize to S x S (bilinear, aspect not kept), ImageNet mean/std."""
    return Preprocess(height=image_size, width=image_size, resize="squash", crop=False, interpolation="bilinear",
                      mean=IMAGENET_MEAN, std=IMAGENET_STD)


def checkpoint_key(path: Path) -> str:
    """16 hex of sha256(name, size, content sha256): the identity of a checkpoint file's every byte.

    The content digest is computed once per file version (``digests.file_sha256`` caches it).
    """
    from glimpse.digests import file_sha256

    digest = hashlib.sha256(f"{path.name}\0{path.stat().st_size}\0{file_sha256(path)}".encode())
    return digest.hexdigest()[:16]


def legacy_checkpoint_key(path: Path) -> str:
    """The key glimpse gave a checkpoint before it hashed whole files: name, size, first and last MiB
    (checkpoints differing only in the middle collided). Tags stored under it are renamed (``tag_catalog``)."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as handle:
        digest.update(f"{path.name}\0{size}\0".encode() + handle.read(_MIB))
        handle.seek(max(size - _MIB, 0))
        digest.update(handle.read(_MIB))
    return digest.hexdigest()[:16]


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pth`` checkpoint (``{"model": …}`` or a bare state dict), read without pickled code."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(f"RAM checkpoint {path} does not exist; give the .pth file with --ram-checkpoint")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or non-tensor pickles
        raise ModelError(
            f"cannot read the RAM checkpoint {path} ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "expected an official .pth ({'model': state_dict}) — re-download it"
        ) from exc
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelError(f"{path} holds no state dict of tensors; expected an official RAM / RAM++ checkpoint")
    return {str(k): v for k, v in data.items()}


def infer_config(state: dict[str, torch.Tensor], image_size: int | None = None) -> RamConfig:
    """A ``RamConfig`` from tensor shapes alone (``image_size`` only needed for non-standard windows)."""
    from glimpse.tagging.ram_model import LABEL_DIM, RAM_PLUS_DESCRIPTIONS, RamConfig
    from glimpse.tagging.swin import SwinConfig

    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise ModelError(f"the checkpoint has no {key!r}; it is not a RAM / RAM++ checkpoint")
        return state[key]

    embed_dim = int(need("visual_encoder.patch_embed.proj.weight").shape[0])
    patch = int(state["visual_encoder.patch_embed.proj.weight"].shape[-1])
    depths, heads = [], []
    stage = 0
    while f"visual_encoder.layers.{stage}.blocks.0.attn.qkv.weight" in state:
        blocks = 0
        while f"visual_encoder.layers.{stage}.blocks.{blocks}.attn.qkv.weight" in state:
            blocks += 1
        depths.append(blocks)
        heads.append(int(state[f"visual_encoder.layers.{stage}.blocks.0.attn.relative_position_bias_table"].shape[1]))
        stage += 1
    if not depths:
        raise ModelError("the checkpoint has no Swin blocks (visual_encoder.layers.*); only Swin RAM models load")
    table = state["visual_encoder.layers.0.blocks.0.attn.relative_position_bias_table"]
    window = math_isqrt_window(int(table.shape[0]))
    size = image_size or WINDOW_TO_IMAGE_SIZE.get(window)
    if size is None:
        raise ModelError(f"the checkpoint's Swin window is {window}, not 7 (224 px) or 12 (384 px); "
                         "give the image size it was trained at")
    label = need("label_embed")
    plus = "reweight_scale" in state
    descriptions = RAM_PLUS_DESCRIPTIONS if plus else 1
    if label.ndim != 2 or label.shape[1] != LABEL_DIM or label.shape[0] % descriptions:
        raise ModelError(f"label_embed has shape {list(label.shape)}; expected [num_classes * {descriptions}, "
                         f"{LABEL_DIM}]")
    layers = 0
    while f"tagging_head.encoder.layer.{layers}.crossattention.self.query.weight" in state:
        layers += 1
    if layers == 0:
        raise ModelError("the checkpoint has no tagging_head.encoder.layer.*; it is not a RAM / RAM++ checkpoint")
    hidden = int(state["tagging_head.encoder.layer.0.crossattention.self.query.weight"].shape[0])
    return RamConfig(
        swin=SwinConfig(image_size=size, embed_dim=embed_dim, depths=tuple(depths), num_heads=tuple(heads),
                        window_size=window, patch_size=patch),
        num_classes=int(label.shape[0]) // descriptions, plus=plus, descriptions=descriptions,
        hidden_size=hidden, num_layers=layers,
        intermediate_size=int(state["tagging_head.encoder.layer.0.intermediate.dense.weight"].shape[0]),
    )


def math_isqrt_window(table_rows: int) -> int:
    """Window size ``w`` from the ``(2w - 1)^2`` rows of a relative position bias table."""
    import math

    side = math.isqrt(table_rows)
    if side * side != table_rows or side % 2 == 0:
        raise ModelError(f"a relative_position_bias_table has {table_rows} rows; expected (2w-1)^2")
    return (side + 1) // 2


def _backbone_name(config: RamConfig) -> str:
    names = {128: "swin_b", 192: "swin_l"}
    return names.get(config.swin.embed_dim, f"swin(embed_dim={config.swin.embed_dim})")


def load_ram(path: str | os.PathLike[str], *, image_size: int | None = None) -> tuple[RamModel, LoadReport]:
    """Build a ``RamModel`` from an official checkpoint, every key accounted for; float32, eval mode."""
    import torch

    from glimpse.tagging.ram_model import RamModel

    state = read_state_dict(path)
    for key in [k for k in state if k.startswith("vision_multi.")]:
        state["tagging_head." + key[len("vision_multi."):]] = state.pop(key)
    config = infer_config(state, image_size)
    model = RamModel(config)
    report = LoadReport("ram_plus" if config.plus else "ram", _backbone_name(config), config.swin.image_size,
                        config.num_classes)
    expected = model.state_dict()
    buffers = dict(model.named_buffers())
    tensors: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in state.items():
        prefix = next((p for p in IGNORED_PREFIXES if key.startswith(p)), None)
        if prefix is not None:
            report.ignored[prefix.rstrip(".")] = report.ignored.get(prefix.rstrip("."), 0) + 1
        elif _DERIVED.search(key):
            mine = buffers.get(key)
            if mine is None or mine.shape != value.shape or not torch.equal(mine.to(value.dtype), value):
                raise ModelError(f"{path}: {key} does not match the Swin layout inferred from the weights "
                                 f"(window {config.swin.window_size}); the checkpoint is inconsistent")
            report.derived_checked += 1
        elif key in expected:
            if expected[key].shape != value.shape:
                raise ModelError(f"{path}: {key} has shape {list(value.shape)}, the model expects "
                                 f"{list(expected[key].shape)}")
            tensors[key] = value.float()
        else:
            unexpected.append(key)
    missing = sorted(set(expected) - set(tensors))
    if unexpected or missing:
        raise ModelError(
            f"{path} does not match the {report.variant} architecture: "
            + (f"{len(unexpected)} unexpected key(s) {unexpected[:5]}" if unexpected else "")
            + ("; " if unexpected and missing else "")
            + (f"{len(missing)} missing key(s) {missing[:5]}" if missing else "")
            + "; is this an official RAM / RAM++ checkpoint?"
        )
    model.load_state_dict(tensors, strict=True)
    report.loaded = len(tensors)
    return model.eval(), report


# -- tag files ----------------------------------------------------------------------------------------------
def _tag_file(checkpoint: Path, given: str | os.PathLike[str] | None, default: str, what: str) -> Path:
    path = Path(given).expanduser() if given else checkpoint.parent / default
    if not path.is_file():
        hint = f"give its path with {what}" if not given else "check the path"
        raise UserInputError(f"RAM {default if not given else 'file'} not found: {path}; {hint} "
                             f"(the official file is ram/data/{default} of recognize-anything)")
    return path


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"cannot read {path} as UTF-8 text ({exc})") from exc


def read_tag_files(checkpoint: str | os.PathLike[str], num_classes: int, *, tag_list: str | None = None,
                   chinese_list: str | None = None, thresholds: str | None = None, need_chinese: bool = False,
                   need_thresholds: bool = True) -> Vocabulary:
    """The RAM vocabulary: English names, Chinese names (when needed) and per-class thresholds.

    Thresholds follow the reference: every class starts at 0.68 and line ``i`` of the threshold file sets
    class ``i``. With ``need_thresholds`` false (a global threshold was given) the file is not required.
    """
    ckpt = Path(checkpoint).expanduser()
    names = _read_lines(_tag_file(ckpt, tag_list, TAG_LIST, "--tag-list"))
    if len(names) != num_classes:
        raise UserInputError(f"the tag list has {len(names)} lines but the checkpoint scores {num_classes} "
                             "classes; use the tag list that belongs to this checkpoint")
    chinese = None
    if need_chinese:
        path = _tag_file(ckpt, chinese_list, TAG_LIST_CHINESE, "--tag-list-chinese")
        chinese = _read_lines(path)
        if len(chinese) != num_classes:
            raise UserInputError(f"{path} has {len(chinese)} lines, expected {num_classes} (one per tag)")
    cut = np.full(num_classes, DEFAULT_THRESHOLD, dtype=np.float32)
    if need_thresholds or thresholds:
        path = _tag_file(ckpt, thresholds, TAG_THRESHOLDS, "--tag-thresholds")
        lines = [s.strip() for s in _read_lines(path) if s.strip()]
        if len(lines) > num_classes:
            raise UserInputError(f"{path} has {len(lines)} thresholds for {num_classes} classes")
        try:
            cut[: len(lines)] = [float(s) for s in lines]
        except ValueError as exc:
            raise UserInputError(f"{path} must hold one number per line ({exc})") from exc
    return Vocabulary(list(names), cut, chinese)


# -- the tagger ---------------------------------------------------------------------------------------------
class RamTagger(Tagger):
    """Tags with a RAM / RAM++ checkpoint: ``score_pixels`` gives ``sigmoid(logits)`` ``float32[n, C]``."""

    def __init__(self, checkpoint: str | os.PathLike[str], *, languages: Sequence[str] = ("en",),
                 image_size: int | None = None, tag_list: str | None = None, chinese_list: str | None = None,
                 thresholds: str | None = None, need_thresholds: bool = True, device: str = "cpu",
                 batch_size: int = 8) -> None:
        import torch

        self._torch = torch
        self.checkpoint = Path(checkpoint).expanduser()
        self.model, self.report = load_ram(self.checkpoint, image_size=image_size)
        self.vocab = read_tag_files(self.checkpoint, self.model.config.num_classes, tag_list=tag_list,
                                    chinese_list=chinese_list, thresholds=thresholds,
                                    need_chinese="zh" in languages, need_thresholds=need_thresholds)
        self.device, self.batch_size = device, batch_size
        self.model.to(device)
        self.preprocess = ram_preprocess(self.model.config.swin.image_size)
        self.source = f"{self.report.variant}:{checkpoint_key(self.checkpoint)}"
        self.legacy_source = f"{self.report.variant}:{legacy_checkpoint_key(self.checkpoint)}"

    def add_open_set(self, names: Sequence[str], encoder: Encoder, *, threshold: float = OPEN_SET_THRESHOLD,
                     chinese: Sequence[str] | None = None) -> None:
        """Score extra tags: their prompt-template CLIP text embeddings become label queries.

        RAM's label queries are CLIP ViT-B/16 text embeddings (512-d), so ``encoder`` must give 512-d texts;
        the reference builds open-set queries with that model (``openai/clip-vit-base-patch16``).
        """
        from glimpse.templates import embed_labels

        names = [n.strip() for n in names if n.strip()]
        if not names:
            return
        if encoder.dim != 512:
            raise UserInputError(f"open-set tags need a CLIP text tower with 512-d embeddings (RAM's label space, "
                                 f"openai/clip-vit-base-patch16); {encoder.spec.name} gives {encoder.dim}")
        embeddings = embed_labels(encoder, names)  # float32[n, T, 512]
        self.model.set_open_set(self._torch.from_numpy(embeddings).to(self.device))
        closed = self.model.config.num_classes
        vocab = self.vocab
        self.vocab = Vocabulary(
            vocab.names[:closed] + list(names),
            np.concatenate([vocab.thresholds[:closed], np.full(len(names), threshold, dtype=np.float32)]),
            (vocab.chinese[:closed] + list(chinese or names)) if vocab.chinese is not None else None,
            open_set=np.concatenate([np.zeros(closed, dtype=bool), np.ones(len(names), dtype=bool)]),
        )
        self.source = f"{self.source}+open:{encoder.key[:8]}"
        self.legacy_source = f"{self.legacy_source}+open:{encoder.key[:8]}"

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """Raw logits ``float32[n, C]`` for preprocessed ``float32[n, 3, S, S]``."""
        torch = self._torch
        pixels = np.asarray(pixels, dtype=np.float32)
        size = self.model.config.swin.image_size
        if pixels.ndim != 4 or pixels.shape[1:] != (3, size, size):
            raise UserInputError(f"pixels must have shape [n, 3, {size}, {size}], got {list(pixels.shape)}")
        out = []
        with torch.inference_mode():
            for start in range(0, len(pixels), self.batch_size):
                batch = torch.from_numpy(pixels[start : start + self.batch_size]).to(self.device)
                out.append(self.model(batch).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.vocab)), dtype=np.float32)

    def score_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return sigmoid(self.logits(pixels))
