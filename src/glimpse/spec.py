"""ModelSpec: one frozen description that binds a model's architecture, weights and preprocessing.

A spec is saved as ``spec.json`` next to exported weights so that a model directory is self-describing.
Keeping the preprocessing inside the spec (and never apart from the weights) is what stops silent
mismatches such as a checkpoint evaluated with another checkpoint's mean/std.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from glimpse.errors import ModelError

SPEC_FILENAME = "spec.json"
SPEC_VERSION = 1

Family = str  # a family name: a key of glimpse.families.FAMILIES ("clip", "chinese_clip", "siglip", ...)
Runtime = Literal["torch", "onnx"]
ResizeMode = Literal["shortest", "squash", "naflex"]
Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]


def slug(name: str) -> str:
    """``"openai/clip-vit-base-patch32"`` -> ``"openai-clip-vit-base-patch32"`` (safe in file names and keys)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"


@dataclass(frozen=True)
class Preprocess:
    """How an RGB image becomes the network input ``float32[3, height, width]``.

    ``resize="shortest"``: scale so the shortest edge is ``shortest_edge`` (aspect kept), then
    center-crop to ``(height, width)`` when ``crop`` is true.
    ``resize="squash"``: scale straight to ``(height, width)``, aspect not kept, no crop.
    ``resize="naflex"`` (SigLIP2 NaFlex): scale, aspect kept, to the largest multiple of ``patch_size`` per
    side with at most ``max_num_patches`` patches; the network input is then the patch sequence, packed as
    ``float32[max_num_patches + 1, 3 * patch_size**2]`` (see ``glimpse.preprocess.pack_naflex``);
    ``height``/``width`` are only the nominal square size.
    Pixels are multiplied by ``rescale`` (1/255) then normalised with ``mean``/``std`` per channel.
    """

    height: int
    width: int
    resize: ResizeMode = "shortest"
    shortest_edge: int | None = None
    crop: bool = True
    interpolation: Interpolation = "bicubic"
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    rescale: float = 1.0 / 255.0
    patch_size: int | None = None
    max_num_patches: int | None = None
    #: the crop offset of an image larger than the crop: ``"floor"`` = ``(size - crop) // 2`` (transformers,
    #: immich); ``"round"`` = ``int(round((size - crop) / 2))``, Python's half-to-even (torchvision's
    #: CenterCrop, so open_clip's eval transform): they differ by one pixel for excesses of 3, 7, 11, …
    crop_rounding: Literal["floor", "round"] = "floor"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one preprocessed image: ``(3, height, width)``, or NaFlex's packed patches."""
        if self.resize == "naflex":
            return (int(self.max_num_patches or 0) + 1, 3 * int(self.patch_size or 0) ** 2)
        return (3, self.height, self.width)

    @property
    def min_side(self) -> int:
        """Smallest source side length that loses nothing when decoding (used for JPEG draft)."""
        if self.resize == "naflex":
            # The short side of a NaFlex target is at most about patch * sqrt(max_num_patches), plus one patch
            # for the rounding up to whole patches.
            return int(self.patch_size or 16) * (math.isqrt(int(self.max_num_patches or 0)) + 2)
        if self.resize == "shortest":
            return int(self.shortest_edge or min(self.height, self.width))
        return max(self.height, self.width)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to load a model and to feed it exactly as it was trained.

    ``key`` identifies the weights (not just the architecture): embeddings are stored per key and a
    vector index refuses vectors of another key.
    """

    name: str
    key: str
    family: Family
    source: str
    preprocess: Preprocess
    dim: int
    context_length: int
    runtime: Runtime = "torch"
    revision: str | None = None
    languages: tuple[str, ...] = ("en",)
    logit_scale: float = 100.0
    logit_bias: float | None = None
    text_padding: Literal["longest", "max_length"] = "longest"
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["spec_version"] = SPEC_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        data = dict(data)
        version = data.pop("spec_version", SPEC_VERSION)
        if version > SPEC_VERSION:
            raise ModelError(
                f"spec.json has version {version}, this glimpse understands up to {SPEC_VERSION}; "
                "upgrade glimpse to use this model"
            )
        try:
            pre = Preprocess(**data.pop("preprocess"))
            # JSON turns tuples into lists; a frozen spec must stay hashable.
            pre = replace(pre, mean=tuple(pre.mean), std=tuple(pre.std))  # type: ignore[arg-type]
            data["languages"] = tuple(data.get("languages", ("en",)))
            return cls(preprocess=pre, **data)
        except (KeyError, TypeError) as exc:
            raise ModelError(f"spec.json is malformed ({exc}); re-export the model") from exc

    def save(self, directory: str | Path) -> Path:
        """Write ``spec.json`` into ``directory``; returns its path."""
        path = Path(directory) / SPEC_FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ModelSpec:
        """Read ``spec.json`` from ``directory``."""
        path = Path(directory) / SPEC_FILENAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelError(f"no {SPEC_FILENAME} in {directory}") from exc
        except json.JSONDecodeError as exc:
            raise ModelError(f"{path} is not valid JSON ({exc}); re-export the model") from exc
        return cls.from_dict(data)
