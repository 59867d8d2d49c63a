"""glimpse's OCR engine: PP-OCR detection, 0°/180° line classification and CTC recognition on onnxruntime.

``open_ocr_engine(name)`` loads one model of :data:`glimpse.ocr.models.OCR_MODELS` (default
:data:`~glimpse.ocr.models.DEFAULT_OCR_MODEL`) and returns an :class:`OnnxOcrEngine`, whose ``read(image)``
returns the image's text lines in reading order.

The pipeline, per image:

1. Detection. The image is scaled so its long side is at most ``det_limit`` px (never enlarged by default;
   with ``det_min_side`` a photo whose short side is smaller is enlarged towards it, by 1.5x at most, so
   more small text is found at a cost in speed). Each side is then resized to a multiple of 32 (the
   network's stride) and the DB detector runs. An image much longer than wide (a phone screenshot, a
   scanned receipt) is scaled by its *short* side instead and cut into overlapping ``det_limit``-square
   windows along its long side, so the memory a run needs stays that of one ordinary photo whatever the
   image's length; boxes found twice in an overlap are merged. A flat window (all pixels within
   ``FLAT_RANGE`` grey levels: a blank page, the empty part of a screenshot) skips the network.
2. Crops. Each box is cut out of the full-resolution image with a perspective warp; a crop much taller
   than wide is turned 90° (vertical text). The line classifier (when the model has one) turns the crops it
   reads as upside down by 180°.
3. Recognition. Crops are resized to 48 px high, sorted by aspect ratio and run in batches padded to the
   widest crop of the batch (sorting keeps the padding small); the output is CTC-decoded greedily.
   ``confidence`` is the mean probability of the kept characters. A crop the classifier turned is also read
   unturned, and the more confident reading is kept (the classifier is sometimes sure of a wrong turn).
4. Line ends. Every line that would be kept is read again from its box lengthened by ``extend_ends``
   (:data:`EXTEND_ENDS`, 0.5) line heights at both ends. Where the background changes under a word the
   detector's map fades and the box stops a letter or two short ("Platfor"); the longer reading (and box)
   is taken when it is the first one plus characters at its ends, each with probability >=
   :data:`END_MIN_PROB`, at a confidence at most :data:`END_MARGIN` lower. When the two readings disagree
   inside the first one's text and neither reaches :data:`AGREE_CONF`, the line is dropped. Last,
   characters at either end read with probability < :data:`END_TRIM_PROB` are cut off (texture at a box's
   end read as a letter: "iparking").

Lines whose confidence is below ``min_confidence`` (default :data:`MIN_CONFIDENCE`, 0.5, the cut both
source packages use) are dropped: that is where unreadable scripts and texture mistaken for text end up; so
are lines holding no letter, digit or ideograph (``str.isalnum``): a smooth gradient enlarged for the detector
can come out as one "_" the size of the image, and punctuation alone is nothing to search for.

Sessions are created once and shared; ``read`` keeps no state between calls, so one engine serves many
threads at once (onnxruntime's ``run`` is thread-safe and releases the GIL).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from glimpse.errors import FeatureUnavailableError
from glimpse.ocr.base import OcrLine, OcrModelError
from glimpse.ocr.models import INSTALL_HINT, OcrModelSpec, model_root, ocr_model_spec

if TYPE_CHECKING:
    from glimpse.ocr.geometry import DbParams

MIN_CONFIDENCE = 0.5
# Bump when a change to this module changes what ``read`` returns for the same image and model files: the
# model id changes with it, so stored OCR results are redone.
PIPELINE_VERSION = 3
DET_LIMIT = 960  # px: the detector's long side at most (an image's short side, when it is tiled)
# px: an image whose short side is smaller is enlarged towards this (up to DET_LIMIT, 1.5x at most). On
# coco128-sized photos 544 reads more small text (set (a), 128 photos: word recall en 0.825 -> 0.885, zh 0.834 ->
# 0.860, text-search R@1 0.887 -> 0.907) for 1.6x the detector time; quiet, that is still above 4 images/s on
# 2 cores (docs/BENCHMARKS.md, "OCR speed ... quiet machine"), so it is the default; 0 turns it off.
DET_MIN_SIDE = 544
REC_HEIGHT = 48  # px: the recognisers' input height (PP-OCR v4-v6)
REC_MIN_WIDTH = 320  # px: batches are padded to at least this width, as the models were trained (48x320)
REC_BATCH = 8
CLS_SHAPE = (48, 192)  # (h, w) of the 0/180 line classifier's input
CLS_THRESH = 0.9  # turn a crop only when the classifier is this sure it is upside down
MAX_ENLARGE = 1.5  # det_min_side never enlarges more: small images hold big text, which enlarging breaks up
LONG_RATIO = 2.0  # long side / short side above which an image is tiled instead of shrunk
MIN_SIDE = 4  # px: smaller images hold no readable text
FLAT_RANGE = 8  # grey levels: a detector window whose pixels all lie closer together than this is skipped
# Line ends (step 4 of the module docstring). Chosen on set (a) (EXTEND_ENDS 0.3 / 0.5 / 0.8, END_MARGIN 0 /
# 0.05, END_MIN_PROB 0.7-0.9, AGREE_CONF 0.7-0.95, END_TRIM_PROB 0.4-0.7) and checked on a second set rendered
# with another seed: both gain recall (cut-off letters read back) and precision; they cost ~1.1x the time per
# coco128 photo, ~1.35x on photos with several lines (docs/BENCHMARKS.md, OCR).
EXTEND_ENDS = 0.5
END_MIN_PROB = 0.9
END_MARGIN = 0.05
AGREE_CONF = 0.8  # two readings of a line that disagree, both less sure than this: the line is dropped
# A line's first and last characters read with a probability under this are dropped: at a box's ends they are
# mostly texture or the edge of something else read as a letter ("iparking", "BAST" for EAST).
END_TRIM_PROB = 0.55


def _require_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise FeatureUnavailableError(f"OCR needs OpenCV (opencv-python-headless); {INSTALL_HINT}") from exc
    return cv2


def _session(path: Path, threads: int) -> Any:
    """An onnxruntime CPU session for ``path``; ``OcrModelError`` naming the file when it cannot load."""
    import onnxruntime as ort

    if not path.is_file():
        raise OcrModelError(f"OCR model file {path} is missing; reinstall the package that ships it ({INSTALL_HINT})")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle workers must not spin: the indexer decodes JPEGs and runs CLIP on the same cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own InvalidProtobuf/Fail/... classes
        raise OcrModelError(
            f"OCR model file {path} cannot be loaded ({type(exc).__name__}); it is corrupt or not an ONNX model: "
            "reinstall the package that ships it"
        ) from exc


def _characters(spec: OcrModelSpec, root: Path, rec_session: Any) -> list[str]:
    """The recogniser's classes: CTC blank, the dictionary's characters, then the space."""
    if spec.dictionary is None:
        meta = rec_session.get_modelmeta().custom_metadata_map
        if "character" not in meta:
            raise OcrModelError(f"OCR model file {root / spec.rec} has no character list in its metadata")
        chars = meta["character"].splitlines()
    else:
        path = root / spec.dictionary
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise OcrModelError(f"OCR dictionary {path} cannot be read ({exc}); reinstall its package") from exc
        # One character a line; only the line break is stripped (some entries are spaces like U+3000).
        chars = [line.rstrip("\r") for line in text.split("\n")]
        if chars and chars[-1] == "":
            chars.pop()
    return ["", *chars, " "]


_digest_lock = threading.Lock()
_digests: dict[tuple[str, ...], str] = {}


def model_digest(paths: list[Path], settings: str = "") -> str:
    """A short (8 hex) digest of the files' bytes, in order, and of ``settings`` (the pipeline's numbers, which
    change the output as much as the weights do); the files are hashed once per process and file version."""
    from glimpse.digests import file_sha256

    key = (*(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths), settings)
    with _digest_lock:
        cached = _digests.get(key)
    if cached is not None:
        return cached
    import hashlib

    combined = hashlib.sha256(("".join(file_sha256(p) for p in paths) + settings).encode()).hexdigest()[:8]
    with _digest_lock:
        _digests[key] = combined
    return combined


@dataclass(frozen=True)
class _Crop:
    index: int  # position in reading order
    pixels: np.ndarray  # (h, w, 3) uint8 RGB, upright as far as known
    turns: int  # quarter turns (counter-clockwise) applied to the box's corner order


@dataclass(frozen=True)
class _Reading:
    text: str
    confidence: float  # mean probability of the kept characters; 0.0 for an empty reading
    probs: np.ndarray  # (len(text),) float32: each kept character's probability


class OnnxOcrEngine:
    """One loaded PP-OCR model (see the module docstring for the pipeline and its settings)."""

    def __init__(self, spec: OcrModelSpec, root: Path, *, threads: int, min_confidence: float = MIN_CONFIDENCE,
                 det_limit: int = DET_LIMIT, det_min_side: int = DET_MIN_SIDE, use_cls: bool = True,
                 rec_batch: int = REC_BATCH, rec_min_width: int = REC_MIN_WIDTH,
                 extend_ends: float = EXTEND_ENDS) -> None:
        from glimpse.ocr import geometry

        self._cv2 = _require_cv2()
        self._geometry = geometry
        self.spec = spec
        self.root = root
        self.min_confidence = float(min_confidence)
        self.det_limit = int(det_limit)
        self.det_min_side = int(det_min_side)
        # Windows of a tiled image, in detector pixels: squares of the limit, overlapping by a fifth of it
        # (192 px at 960: more than any one line of a screenshot or a receipt is tall). Square windows keep
        # the detector's peak memory that of an ordinary photo (1.5x longer ones cost ~110 MB more).
        self.tile_len = max(64, self.det_limit // 32 * 32)
        self.tile_overlap = max(32, self.det_limit // 5 // 32 * 32)
        self.rec_batch = int(rec_batch)
        self.rec_min_width = int(rec_min_width)
        self.extend_ends = float(extend_ends)
        self._db: DbParams = geometry.DbParams(spec.det_thresh, spec.box_thresh, spec.unclip_ratio, spec.dilate)
        self._det = _session(root / spec.det, threads)
        self._rec = _session(root / spec.rec, threads)
        self._cls = _session(root / spec.cls, threads) if (use_cls and spec.cls is not None) else None
        self._chars = _characters(spec, root, self._rec)
        classes = self._rec.get_outputs()[0].shape[-1]
        if isinstance(classes, int) and classes != len(self._chars):
            raise OcrModelError(
                f"OCR model file {root / spec.rec} predicts {classes} classes but its character list gives "
                f"{len(self._chars)}; the recogniser and its dictionary do not belong together"
            )
        self._det_input = self._det.get_inputs()[0].name
        self._rec_input = self._rec.get_inputs()[0].name
        self._cls_input = self._cls.get_inputs()[0].name if self._cls is not None else ""
        mean = np.array(spec.det_mean_bgr[::-1], dtype=np.float32)  # we hold RGB pixels; the spec is BGR
        std = np.array(spec.det_std_bgr[::-1], dtype=np.float32)
        self._det_scale = (1.0 / (255.0 * std)).astype(np.float32)
        self._det_shift = (mean / std).astype(np.float32)
        settings = (f"pipeline={PIPELINE_VERSION} det_limit={self.det_limit} det_min_side={self.det_min_side} "
                    f"min_confidence={self.min_confidence} cls={self._cls is not None} extend_ends={self.extend_ends}")
        self._model_id = f"{spec.name}:{model_digest([root / f for f in spec.files()], settings)}"

    @property
    def model_id(self) -> str:
        """``"<model name>:<8 hex digest of its files and of the pipeline's settings>"``."""
        return self._model_id

    # -- detection ------------------------------------------------------------------------------------

    def _det_map(self, rgb: np.ndarray) -> np.ndarray:
        """The DB probability map (h, w) float32 of ``rgb`` (h, w, 3) uint8, padded to the stride and back."""
        h, w = rgb.shape[:2]
        ph, pw = max(32, math.ceil(h / 32) * 32), max(32, math.ceil(w / 32) * 32)
        x = rgb.astype(np.float32) * self._det_scale - self._det_shift
        batch = np.zeros((1, 3, ph, pw), dtype=np.float32)
        batch[0, :, :h, :w] = x[..., ::-1].transpose(2, 0, 1)  # RGB -> BGR, HWC -> CHW
        prob = self._det.run(None, {self._det_input: batch})[0]
        return prob[0, 0, :h, :w]

    def detect(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Text boxes of ``rgb`` (H, W, 3) uint8: ``(quad (4, 2) float32 in its pixels, score)`` pairs."""
        cv2, geometry = self._cv2, self._geometry
        h, w = rgb.shape[:2]
        long_side, short_side = max(h, w), min(h, w)
        tiled = long_side > LONG_RATIO * short_side
        # Shrink to the limit; enlarge (up to the limit, by MAX_ENLARGE at most) an image whose short side is
        # under det_min_side, so that small text in a photo reaches the sizes the detector reads best. Only a
        # little: a small image (a thumbnail, a cut-out sign) holds big text, which enlarging breaks up.
        enlarge = min(MAX_ENLARGE, max(1.0, self.det_min_side / short_side))
        scale = min(enlarge, self.det_limit / (short_side if tiled else long_side))
        # Each side to a multiple of 32 (the network's stride) by resizing, not padding: a padded border is an
        # edge the detector answers with a band of faint false text.
        sw, sh = max(32, round(w * scale / 32) * 32), max(32, round(h * scale / 32) * 32)
        interp = cv2.INTER_AREA if sw * sh < w * h else cv2.INTER_LINEAR
        small = rgb if (sw, sh) == (w, h) else cv2.resize(rgb, (sw, sh), interpolation=interp)
        # A strip only a few lines high gets a margin: text touching the border is detected poorly.
        margin = 16 if min(sw, sh) < 64 else 0
        if margin:
            fill = [int(v) for v in np.median(np.concatenate([small[0], small[-1]]), axis=0)]
            small = cv2.copyMakeBorder(small, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=fill)
        tiles = geometry.plan_tiles(small.shape[1], small.shape[0], self.tile_len, self.tile_overlap)
        boxes: list[tuple[np.ndarray, float]] = []
        for tile in tiles:
            window = small[tile.y0:tile.y1, tile.x0:tile.x1]
            if int(window.max()) - int(window.min()) < FLAT_RANGE:
                continue  # a flat window (blank page, empty screenshot area) holds no text: skip the network
            prob = self._det_map(np.ascontiguousarray(window))
            for quad, score in geometry.db_boxes(prob, self._db):
                boxes.append((quad + np.array([tile.x0 - margin, tile.y0 - margin], np.float32), score))
        if len(tiles) > 1:
            boxes = geometry.dedupe_boxes(boxes)
        back = np.array([w / sw, h / sh], dtype=np.float32)
        out = []
        for quad, score in boxes:
            quad = quad * back
            quad[:, 0] = np.clip(quad[:, 0], 0, w - 1)
            quad[:, 1] = np.clip(quad[:, 1], 0, h - 1)
            # Boxes a few pixels thin are specks, not lines.
            if np.linalg.norm(quad[0] - quad[1]) <= 3 or np.linalg.norm(quad[0] - quad[3]) <= 3:
                continue
            out.append((quad, score))
        return out

    # -- orientation + recognition ---------------------------------------------------------------------

    def _normalise_line(self, crop: np.ndarray, height: int, width: int) -> tuple[np.ndarray, int]:
        """``crop`` resized to ``height`` (aspect kept, at most ``width``), scaled to [-1, 1], BGR CHW."""
        h, w = crop.shape[:2]
        new_w = max(1, min(width, math.ceil(height * w / h)))
        resized = self._cv2.resize(crop, (new_w, height), interpolation=self._cv2.INTER_LINEAR)
        x = resized.astype(np.float32) * np.float32(2 / 255) - np.float32(1)
        return x[..., ::-1].transpose(2, 0, 1), new_w

    def _upright(self, crops: list[_Crop]) -> list[_Crop]:
        """Crops the classifier reads as upside down (p >= CLS_THRESH) turned by 180°."""
        if self._cls is None or not crops:
            return crops
        ch, cw = CLS_SHAPE
        out = list(crops)
        for start in range(0, len(crops), self.rec_batch):
            part = crops[start:start + self.rec_batch]
            batch = np.zeros((len(part), 3, ch, cw), dtype=np.float32)
            for k, crop in enumerate(part):
                x, new_w = self._normalise_line(crop.pixels, ch, cw)
                batch[k, :, :, :new_w] = x
            probs = self._cls.run(None, {self._cls_input: batch})[0]
            for k, crop in enumerate(part):
                if probs[k, 1] >= CLS_THRESH:
                    out[start + k] = _Crop(crop.index, np.ascontiguousarray(crop.pixels[::-1, ::-1]), crop.turns + 2)
        return out

    def _recognise(self, crops: list[_Crop]) -> list[_Reading]:
        """One reading per crop, in the order given."""
        results: list[_Reading] = [_Reading("", 0.0, np.zeros(0, np.float32))] * len(crops)
        ratios = [c.pixels.shape[1] / c.pixels.shape[0] for c in crops]
        order = sorted(range(len(crops)), key=lambda i: ratios[i])
        for start in range(0, len(order), self.rec_batch):
            part = order[start:start + self.rec_batch]
            width = max(self.rec_min_width, max(math.ceil(REC_HEIGHT * ratios[i]) for i in part))
            batch = np.zeros((len(part), 3, REC_HEIGHT, width), dtype=np.float32)
            for k, i in enumerate(part):
                x, new_w = self._normalise_line(crops[i].pixels, REC_HEIGHT, width)
                batch[k, :, :, :new_w] = x
            probs = self._rec.run(None, {self._rec_input: batch})[0]  # (B, T, classes), softmax
            for k, i in enumerate(part):
                results[i] = self._ctc_decode(probs[k])
        return results

    def _ctc_decode(self, probs: np.ndarray) -> _Reading:
        """Greedy CTC on ``probs`` (T, classes): best class per step, repeats collapsed, blanks (class 0)
        dropped."""
        best = probs.argmax(axis=1)
        keep = best != 0
        keep[1:] &= best[1:] != best[:-1]
        if not keep.any():
            return _Reading("", 0.0, np.zeros(0, np.float32))
        text = "".join(self._chars[c] for c in best[keep])
        kept = probs[np.arange(len(best)), best][keep].astype(np.float32)
        return _Reading(text, float(kept.mean()), kept)

    def _keeps(self, reading: _Reading) -> bool:
        """Is ``reading`` confident enough and does it hold a letter, digit or ideograph?"""
        return reading.confidence >= self.min_confidence and any(ch.isalnum() for ch in reading.text)

    def _second_opinion(self, crops: list[_Crop], upright: list[_Crop], readings: list[_Reading]) -> None:
        """For the crops the classifier turned by 180°, read the unturned crop too and keep the more confident
        reading (in place). The mobile 0/180 classifier is sure of a flip on some upright words (an upright
        "support" read upside down as "supodnrt"); the recogniser reads the right way up far more surely."""
        turned = [k for k in range(len(crops)) if upright[k].turns != crops[k].turns]
        if not turned:
            return
        for k, reading in zip(turned, self._recognise([crops[k] for k in turned]), strict=True):
            if reading.confidence > readings[k].confidence:
                upright[k], readings[k] = crops[k], reading

    def _read_ends(self, rgb: np.ndarray, crops: list[_Crop], quads: list[np.ndarray],
                   readings: list[_Reading]) -> None:
        """Read each kept line again from its box lengthened by ``extend_ends`` line heights at both ends, and
        take the longer reading (and box) when it only adds sure characters; drop the line when the two
        readings disagree inside the first one's text and neither reaches AGREE_CONF (in place).

        Why: where the background changes under a word (a letter over a face, a sign's edge) the detector's
        map fades out and the box stops a letter or two short ("Platfor", "reakfast"); the recogniser reads
        the missing letters surely once they are in the crop, and reads plain background as nothing.
        """
        geometry = self._geometry
        h, w = rgb.shape[:2]
        todo, longer = [], []
        for k, (crop, quad, reading) in enumerate(zip(crops, quads, readings, strict=True)):
            if not self._keeps(reading):
                continue
            vertical = crop.turns % 2 == 1
            across = float(np.linalg.norm(quad[1] - quad[0]) if vertical else np.linalg.norm(quad[3] - quad[0]))
            grow = self.extend_ends * across
            quad2 = geometry.extend_quad(quad, vertical, grow, grow, w, h)
            pixels, _ = geometry.crop_line(rgb, quad2, 2 * REC_HEIGHT, turn=vertical)
            if crop.turns >= 2:
                pixels = np.ascontiguousarray(pixels[::-1, ::-1])
            todo.append((k, vertical, grow))
            longer.append(_Crop(crop.index, pixels, crop.turns))
        if not todo:
            return
        for (k, vertical, grow), reading in zip(todo, self._recognise(longer), strict=True):
            added = _added_ends(readings[k], reading)
            if added is None:
                first, second = readings[k].text.replace(" ", ""), reading.text.replace(" ", "")
                if first not in second and max(readings[k].confidence, reading.confidence) < AGREE_CONF:
                    readings[k] = _Reading("", 0.0, np.zeros(0, np.float32))  # two unsure views that disagree
                continue
            before, after = added
            # The box grows only at the ends that gained characters; corner 0 is the start of the text for
            # an upright crop and its end for one turned by 180°.
            head, tail = (grow if before else 0.0), (grow if after else 0.0)
            if crops[k].turns >= 2:
                head, tail = tail, head
            quads[k] = geometry.extend_quad(quads[k], vertical, head, tail, w, h)
            readings[k] = reading

    # -- the whole pipeline ---------------------------------------------------------------------------

    def read(self, image: Image.Image) -> list[OcrLine]:
        """The text lines of ``image`` (any PIL mode; converted to RGB), in reading order.

        Boxes are 4 (x, y) points in ``image``'s pixels, clockwise from the top-left corner of the text as
        read; lines under ``min_confidence``, or without a letter, digit or ideograph, are dropped. An image
        without text, or one under 4 px a side,
        gives ``[]``.
        """
        if min(image.size) < MIN_SIDE:
            return []
        rgb = np.asarray(_as_rgb(image))
        boxes = self.detect(rgb)
        if not boxes:
            return []  # nothing detected: recognition is skipped entirely
        quads = [q for q, _ in boxes]
        order = self._geometry.reading_order(quads)
        crops = []
        for rank, i in enumerate(order):
            pixels, turned = self._geometry.crop_line(rgb, quads[i], 2 * REC_HEIGHT)
            crops.append(_Crop(rank, pixels, 1 if turned else 0))
        upright = self._upright(crops)
        readings = self._recognise(upright)
        self._second_opinion(crops, upright, readings)
        line_quads = [quads[order[c.index]] for c in upright]
        if self.extend_ends > 0:
            self._read_ends(rgb, upright, line_quads, readings)
        readings = [_trim_ends(r) for r in readings]
        lines = []
        for crop, quad, reading in zip(upright, line_quads, readings, strict=True):
            if not self._keeps(reading):
                continue  # unsure, or no letter, digit or ideograph at all ("_", "·"): texture, not text
            # The box starts at the text's own top-left corner: a crop turned k quarter turns
            # counter-clockwise reads from the corner k places further round the box.
            start = crop.turns % 4
            corners = [quad[(start + j) % 4] for j in range(4)]
            box = tuple((float(x), float(y)) for x, y in corners)
            lines.append(OcrLine(reading.text.strip(), min(max(reading.confidence, 0.0), 1.0), box))  # type: ignore[arg-type]
        return lines


def _added_ends(short: _Reading, long: _Reading) -> tuple[bool, bool] | None:
    """``(added before, added after)`` when ``long`` reads ``short`` plus characters at its ends, each with
    probability >= END_MIN_PROB, at a confidence at most END_MARGIN below ``short``'s; else ``None``.
    Spaces are ignored in the comparison (a lengthened crop may space the words differently)."""
    a = [(ch, p) for ch, p in zip(short.text, short.probs, strict=True) if not ch.isspace()]
    b = [(ch, p) for ch, p in zip(long.text, long.probs, strict=True) if not ch.isspace()]
    if len(b) <= len(a) or not a or long.confidence < short.confidence - END_MARGIN:
        return None
    sa, sb = "".join(ch for ch, _ in a), "".join(ch for ch, _ in b)
    at = sb.find(sa)
    if at < 0:
        return None
    extra = [p for _, p in b[:at]] + [p for _, p in b[at + len(a):]]
    if min(extra) < END_MIN_PROB:
        return None
    return at > 0, at + len(a) < len(b)


def _trim_ends(reading: _Reading) -> _Reading:
    """``reading`` without the characters (and spaces) at either end read with probability < END_TRIM_PROB,
    when at least one character is left; the confidence is then that of the characters kept."""
    text, probs = reading.text, reading.probs
    a, b = 0, len(text)
    while a < b and (text[a].isspace() or probs[a] < END_TRIM_PROB):
        a += 1
    while b > a and (text[b - 1].isspace() or probs[b - 1] < END_TRIM_PROB):
        b -= 1
    if (a, b) == (0, len(text)) or a == b:
        return reading
    return _Reading(text[a:b], float(probs[a:b].mean()), probs[a:b])


def _as_rgb(image: Image.Image) -> Image.Image:
    """``image`` as RGB; transparency over white (dark text on a transparent screenshot stays readable)."""
    if image.mode == "RGB":
        return image
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        out = Image.new("RGB", image.size, (255, 255, 255))
        out.paste(rgba, mask=rgba)
        return out
    return image.convert("RGB")


def open_ocr_engine(model: str | None = None, *, threads: int | None = None, model_dir: str | Path | None = None,
                    min_confidence: float = MIN_CONFIDENCE, det_limit: int = DET_LIMIT,
                    det_min_side: int = DET_MIN_SIDE, use_cls: bool = True,
                    extend_ends: float = EXTEND_ENDS) -> OnnxOcrEngine:
    """Load the OCR model ``model`` (a name of ``OCR_MODELS``; ``None``: ``DEFAULT_OCR_MODEL``).

    ``threads``: onnxruntime intra-op threads per session (default: ``$GLIMPSE_THREADS`` or every core).
    ``model_dir``: a folder laid out like the model's package folder, instead of the installed package.
    Raises ``UserInputError`` for an unknown name, ``FeatureUnavailableError`` when the package (or OpenCV)
    is not installed, ``OcrModelError`` naming the file when a model file is missing or corrupt.
    """
    spec = ocr_model_spec(model)
    _require_cv2()
    root = Path(model_dir) if model_dir is not None else model_root(spec)
    if threads is None:
        from glimpse.encoders.onnx import default_threads

        threads = default_threads()
    return OnnxOcrEngine(spec, root, threads=threads, min_confidence=min_confidence, det_limit=det_limit,
                         det_min_side=det_min_side, use_cls=use_cls, extend_ends=extend_ends)
