"""Torch-free RAM / RAM++ tagging with onnxruntime, from a directory written by ``glimpse tag-export``.

The directory holds ``ram.onnx`` (pixels ``float32[n, 3, S, S]`` -> logits ``float32[n, C]``), ``ram.json``
(variant, image size, classes, precision, the tag source stored with tags) and the tag files
(``ram_tag_list*.txt``), so it works with the same semantics as the checkpoint: per-class thresholds, a
global threshold, exclusions, English and Chinese names. Importing or running this never imports torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from glimpse.errors import ModelError, UserInputError
from glimpse.tagging.base import Tagger, sigmoid
from glimpse.tagging.ram import ram_preprocess, read_tag_files

ONNX_FILE = "ram.onnx"
META_FILE = "ram.json"


def is_onnx_export(path: str | os.PathLike[str]) -> bool:
    """Whether ``--ram-checkpoint`` names an ONNX export (its directory or its ``.onnx`` file)."""
    path = Path(path).expanduser()
    return path.is_dir() or path.suffix.lower() == ".onnx"


def read_meta(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """``(onnx file, ram.json contents)`` of an export directory or of the ``.onnx`` file inside one."""
    path = Path(path).expanduser()
    onnx_path = path / ONNX_FILE if path.is_dir() else path
    meta_path = onnx_path.parent / META_FILE
    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path} does not exist; give a directory written by `glimpse tag-export` or its "
                         f"{ONNX_FILE}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        missing = [k for k in ("variant", "image_size", "num_classes", "source") if k not in meta]
    except (OSError, ValueError, TypeError) as exc:
        missing, meta = [f"readable JSON ({exc})"], {}
    if missing:
        raise ModelError(f"{meta_path} lacks {', '.join(missing)}; the export is incomplete — export it again "
                         "with `glimpse tag-export`")
    return onnx_path, meta


class OnnxRamTagger(Tagger):
    """A RAM / RAM++ ONNX export on onnxruntime: ``score_pixels`` gives ``sigmoid(logits)`` ``float32[n, C]``."""

    def __init__(self, path: str | os.PathLike[str], *, languages: Sequence[str] = ("en",),
                 tag_list: str | None = None, chinese_list: str | None = None, thresholds: str | None = None,
                 need_thresholds: bool = True, device: str = "cpu", batch_size: int = 8) -> None:
        from glimpse.encoders.onnx import make_session

        self.path, self.meta = read_meta(path)
        self.session = make_session(self.path, device=device)
        self.input_name = self.session.get_inputs()[0].name
        self.vocab = read_tag_files(self.path, int(self.meta["num_classes"]), tag_list=tag_list,
                                    chinese_list=chinese_list, thresholds=thresholds,
                                    need_chinese="zh" in languages, need_thresholds=need_thresholds)
        self.preprocess = ram_preprocess(int(self.meta["image_size"]))
        self.source = str(self.meta["source"])
        self.batch_size = batch_size

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """Raw logits ``float32[n, C]`` for preprocessed ``float32[n, 3, S, S]``."""
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        size = int(self.meta["image_size"])
        if pixels.ndim != 4 or pixels.shape[1:] != (3, size, size):
            raise UserInputError(f"pixels must have shape [n, 3, {size}, {size}], got {list(pixels.shape)}")
        out = [self.session.run(None, {self.input_name: pixels[i : i + self.batch_size]})[0]
               for i in range(0, len(pixels), self.batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, len(self.vocab)), dtype=np.float32)

    def score_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return sigmoid(self.logits(pixels))
