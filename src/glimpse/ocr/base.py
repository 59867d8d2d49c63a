"""What an OCR engine returns and what every engine offers (the seam between the engine and the library).

An engine reads one decoded RGB image and returns its text lines in reading order. Boxes are in the pixel
coordinates of the image it was given (upright: EXIF orientation already applied by ``decode_image``);
callers that give a downscaled image scale the boxes themselves (:meth:`OcrLine.scaled`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from glimpse.errors import ModelError

Point = tuple[float, float]
Quad = tuple[Point, Point, Point, Point]


class OcrModelError(ModelError):
    """An OCR model file is missing, corrupt or of the wrong kind; the message names the file."""


@dataclass(frozen=True)
class OcrLine:
    """One recognised line of text.

    ``text``: the recognised string (as the model wrote it, not normalised). ``confidence``: the
    recogniser's mean character probability in [0, 1]. ``box``: 4 (x, y) points, clockwise from the
    top-left corner of the text as read, in pixels of the image the engine was given.
    """

    text: str
    confidence: float
    box: Quad

    def scaled(self, factor: float) -> OcrLine:
        """The same line with its box multiplied by ``factor`` (e.g. back to the full-size image)."""
        box = tuple((x * factor, y * factor) for x, y in self.box)
        return OcrLine(self.text, self.confidence, box)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "confidence": round(float(self.confidence), 4),
                "box": [[round(float(x), 1), round(float(y), 1)] for x, y in self.box]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OcrLine:
        box = tuple((float(x), float(y)) for x, y in data["box"])
        if len(box) != 4:
            raise ValueError(f"an OCR box has 4 points, got {len(box)}")
        return cls(str(data["text"]), float(data["confidence"]), box)  # type: ignore[arg-type]


class OcrEngine(Protocol):
    """Detection + recognition on one image.

    ``model_id`` names the engine and the exact model files (e.g. ``"ppocrv4:3f2a9c1d"``, a digest of
    the files' bytes); it is stored beside every result, so changing the model re-runs OCR, like tags.
    ``read`` never raises for an image without text (it returns ``[]``); it is safe to call from several
    threads at once (onnxruntime sessions are).
    """

    @property
    def model_id(self) -> str: ...

    def read(self, image: Image.Image) -> list[OcrLine]: ...
