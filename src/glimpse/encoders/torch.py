"""The torch backend: transformers' own model class of each family (``ModelFamily.model_class``: CLIPModel,
ChineseCLIPModel, SiglipModel, Siglip2Model, AltCLIPModel), float32, eval mode.

torch and transformers are imported when a ``TorchEncoder`` is built, never at module import time of the
rest of glimpse, so that the query path stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glimpse.encoders.base import Encoder
from glimpse.errors import ModelError
from glimpse.families import get_family
from glimpse.preprocess import unpack_naflex

if TYPE_CHECKING:
    from glimpse.spec import ModelSpec


def features(output: Any) -> Any:
    """The embedding tensor ``float32[b, d]`` from ``get_*_features`` (shared by export and training):
    transformers 5 returns an output object whose ``pooler_output`` holds the projected features,
    transformers 4 the tensor itself."""
    if hasattr(output, "pooler_output"):
        return output.pooler_output
    return output


def tokenize_for_model(tokenizer: Any, texts: list[str], *, family: str, padding: str,
                       context_length: int) -> dict[str, Any]:
    """Token tensors exactly as the model family was trained with (used at query time and in training).

    ``padding``: "longest" or "max_length" (SigLIP pools the last position: fixed-length text).
    Returns ``int64[b, length]`` tensors by input name.
    """
    encoded = tokenizer(texts, padding="max_length" if padding == "max_length" else "longest", truncation=True,
                        max_length=context_length, return_tensors="pt")
    if not get_family(family).text_attention_mask:
        # SigLIP was trained without a text attention mask (it pools the last, padded position);
        # transformers 5's tokenizer returns a mask that would change the embedding, so drop it.
        return {"input_ids": encoded["input_ids"]}
    return dict(encoded)


class TorchEncoder(Encoder):
    """Encoder running a transformers checkpoint directory with torch.

    ``_encode_pixels``: ``float32[b, 3, H, W]`` (NaFlex: packed patches, unpacked into ``pixel_values``,
    ``pixel_attention_mask`` and ``spatial_shapes``) -> ``float32[b, d]``; ``_encode_texts``: ``b`` strings ->
    ``float32[b, d]`` (unnormalised; the base class normalises).
    """

    def __init__(self, spec: ModelSpec, directory: str | Path, *, device: str = "cpu", batch_size: int = 32) -> None:
        super().__init__(spec, batch_size)
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise ModelError(
                f"the torch backend needs torch and transformers ({exc}); install them with "
                "pip install 'glimpse[torch]'"
            ) from exc
        self._torch = torch
        self.directory = Path(directory)
        self.device = device
        class_name = get_family(spec.family).model_class
        model_class = getattr(transformers, class_name)
        # Our own progress bars cover the work; transformers' per-load bars would only clutter stderr.
        transformers.utils.logging.disable_progress_bar()
        try:
            if spec.extra.get("format") == "open_clip":  # open_clip weights mapped onto CLIPModel
                from glimpse import openclip

                model = openclip.load_clip_model(self.directory)
                self.tokenizer = openclip.load_tokenizer(self.directory, spec.context_length)
            else:
                model = model_class.from_pretrained(self.directory, local_files_only=True)
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.directory, local_files_only=True)
        except (OSError, ValueError, ImportError) as exc:
            raise ModelError(
                f"cannot load {class_name} from {self.directory} ({type(exc).__name__}: {exc}); "
                "re-download the model or check the directory holds a complete checkpoint"
            ) from exc
        # Always float32: a checkpoint stored in fp16 must still give the reference embeddings on CPU.
        try:
            self.model = model.float().eval().to(device)
        except (RuntimeError, AssertionError) as exc:
            raise ModelError(f"cannot move the model to device {device!r} ({exc}); try --device cpu") from exc

    def _encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            if self.spec.preprocess.resize == "naflex":
                values, mask, shapes = unpack_naflex(pixels)
                inputs = {"pixel_values": np.ascontiguousarray(values), "pixel_attention_mask": mask,
                          "spatial_shapes": shapes}
            else:
                inputs = {"pixel_values": np.ascontiguousarray(pixels, dtype=np.float32)}
            tensors = {name: torch.from_numpy(value).to(self.device) for name, value in inputs.items()}
            embeds = features(self.model.get_image_features(**tensors))
            return embeds.float().cpu().numpy()

    def tokenize(self, texts: list[str]) -> dict[str, Any]:
        """Token tensors of ``texts`` as this model reads them (``tokenize_for_model`` with the spec's rules)."""
        spec = self.spec
        return tokenize_for_model(self.tokenizer, texts, family=spec.family, padding=spec.text_padding,
                                  context_length=spec.context_length)

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        inputs = self.tokenize(texts)
        with torch.inference_mode():
            inputs = {name: value.to(self.device) for name, value in inputs.items()}
            embeds = features(self.model.get_text_features(**inputs))
            return embeds.float().cpu().numpy()

    def close(self) -> None:
        """Drop the model so its memory can be freed."""
        self.model = None  # type: ignore[assignment]
