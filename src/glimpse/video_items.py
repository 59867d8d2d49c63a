"""A video as searchable items for indexing: its sampled frames (``glimpse.video.sample_video``) preprocessed for
the model, each to become one catalog item (``Catalog`` frames) with its own vector.

The frames are decoded at the model's input size (FFmpeg scales while converting, so a 4K video costs 224 px
pictures) and only those sampled are decoded (key frames for the scene scan, seeks for long scenes).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from glimpse.catalog import VIDEO_FORMAT_PREFIX
from glimpse.errors import ImageError
from glimpse.preprocess import preprocess_image
from glimpse.spec import Preprocess
from glimpse.video import SamplingRules, VideoError, sample_video


class VideoSupportMissingError(ImageError):
    """A video was met but PyAV is not installed (reported once per run, retried after installing)."""


VIDEO_SUPPORT_HINT = "videos need the optional extra: pip install 'glimpse[video]'"


def video_support() -> bool:
    """Whether PyAV imports here."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class SampledVideo:
    """A video ready to encode: ``pixels`` float32[n, *pre.input_shape] of the frames at ``times_ms`` (int
    milliseconds, ascending); the file's ``format`` (``video/<codec>``) and upright size; ``damaged``: why
    decoding stopped early (the frames before it are kept), else None."""

    times_ms: tuple[int, ...]
    pixels: np.ndarray
    format: str
    width: int | None
    height: int | None
    damaged: str | None = None


# A video whose key-frame scan runs longer than this (seconds) reports how far it got, every NOTE_EVERY seconds.
NOTE_AFTER = 2.0
NOTE_EVERY = 1.0


def sample_for_index(path: str, pre: Preprocess, rules: SamplingRules | None = None, *,
                     note: Callable[[str | None], None] | None = None) -> SampledVideo:
    """Sample and preprocess the video at ``path``. Raises ``VideoError`` (one line) when no frame can be had,
    ``VideoSupportMissingError`` without PyAV. ``note``: hears "sampling NAME: 40%" while a long video is scanned
    (after ``NOTE_AFTER`` s), and None when it is done."""
    if not video_support():
        raise VideoSupportMissingError(VIDEO_SUPPORT_HINT)
    started = time.monotonic()
    noted: float | None = None  # when the last note was given
    name = os.path.basename(path)

    def scanned(fraction: float) -> None:
        nonlocal noted
        now = time.monotonic()
        if note is not None and now - started >= NOTE_AFTER and (noted is None or now - noted >= NOTE_EVERY):
            noted = now
            note(f"sampling {name}: {100 * fraction:.0f}%")

    try:
        scan = sample_video(path, rules, min_side=pre.min_side, progress=scanned)
    finally:
        if note is not None and noted is not None:
            note(None)  # the note is cleared once the scan that gave it is over
    if not scan.frames:
        raise VideoError("no frame could be decoded" + (f" ({scan.damaged})" if scan.damaged else ""))
    times: list[int] = []
    kept = []
    for frame in scan.frames:  # two frames within a millisecond are one item
        t_ms = round(frame.timestamp * 1000)
        if times and t_ms <= times[-1]:
            continue
        times.append(t_ms)
        kept.append(frame)
    pixels = np.stack([preprocess_image(f.image, pre) for f in kept])
    return SampledVideo(tuple(times), pixels, VIDEO_FORMAT_PREFIX + (scan.codec or "unknown"), scan.width,
                        scan.height, scan.damaged)
