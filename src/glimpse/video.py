"""Frames worth searching in a video, through PyAV (FFmpeg bundled in its wheels), decoding only what is needed.

A video becomes a few searchable frames, chosen by these rules (:class:`SamplingRules`):

* **Scene changes.** Only *key* frames are decoded for the scan (the other packets are read from the file but
  never reach the decoder), each turned into a 16-bin-per-channel colour histogram at 32 × 32; a histogram distance
  above ``scene_threshold`` between consecutive key frames is a cut. Encoders put a key frame at a cut
  (x264's ``scenecut``, libvpx's auto key frames), so a scene longer than the encoder's key-frame interval is
  seen; a key frame is also what a player seeks to.
* **Spacing.** At most one frame per ``min_interval_s``, and at least one per ``max_interval_s`` even in one
  long scene: where key frames are further apart than that, the frame at the wanted time is decoded by seeking
  to the key frame before it (a second, bounded pass).
* **A cap per video.** At most ``max_frames``; a long video spreads them out (its minimum interval becomes
  ``duration / max_frames``), so a 4-hour recording costs as much as ``max_frames`` samples and one key-frame
  scan, whatever its length. Each frame is reported with its timestamp (seconds from the start).
* **Size.** Frames are scaled by FFmpeg while converting to RGB so that their shorter side is ``min_side``
  (the model's need), and turned upright by the stream's display rotation (phones record sideways).
* **Bad files.** No video stream (an audio-only file), an unreadable container → :class:`VideoError` (one
  line). A truncated or corrupt stream yields the frames decoded before the damage and says so
  (:attr:`VideoScan.damaged`); it never raises half-way.
"""

from __future__ import annotations

import itertools
import math
import os
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from glimpse.errors import FeatureUnavailableError, ImageError, UserInputError

VIDEO_EXTENSIONS: frozenset[str] = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".3gp", ".3g2", ".mts", ".m2ts", ".ts", ".wmv",
    ".flv", ".mpg", ".mpeg", ".ogv",
})
"""Lower-case extensions (with the dot) of the video containers glimpse samples."""

_HIST_SIDE = 32
_HIST_BINS = 16


class VideoError(ImageError):
    """A video cannot be sampled at all (no video stream, unreadable container); one line, fit for a report."""


@dataclass(frozen=True)
class SamplingRules:
    """How frames are chosen (see the module docstring)."""

    min_interval_s: float = 2.0
    max_interval_s: float = 30.0
    max_frames: int = 120
    scene_threshold: float = 0.35

    def __post_init__(self) -> None:
        if not 0 < self.min_interval_s <= self.max_interval_s:
            raise UserInputError(f"video sampling needs 0 < min interval ({self.min_interval_s} s) <= max interval "
                                 f"({self.max_interval_s} s)")
        if self.max_frames < 1:
            raise UserInputError(f"video sampling needs at least 1 frame per video, got {self.max_frames}")
        if not 0 < self.scene_threshold <= 1:
            raise UserInputError(f"the scene threshold is a histogram distance in (0, 1], got {self.scene_threshold}")


@dataclass(frozen=True)
class VideoFrame:
    """One sampled frame: ``timestamp`` in seconds, an upright RGB ``image``, and why it was taken."""

    timestamp: float
    image: Image.Image
    reason: str  # "start", "scene" (a cut), "interval" (max_interval_s elapsed)


@dataclass
class VideoScan:
    """What sampling one video found and did."""

    frames: list[VideoFrame] = field(default_factory=list)
    duration: float | None = None  # seconds
    width: int | None = None  # as displayed (rotation applied)
    height: int | None = None
    rotation: int = 0  # degrees the picture was turned to show it upright
    codec: str | None = None
    keyframes_decoded: int = 0
    frames_decoded: int = 0  # every frame the decoder produced, key frames included
    damaged: str | None = None  # the error that ended decoding early (frames before it are kept)


def is_video_name(name: str | os.PathLike[str] | None) -> bool:
    return name is not None and os.path.splitext(os.fsdecode(name))[1].lower() in VIDEO_EXTENSIONS


def _av():
    try:
        import av
    except ImportError as exc:
        raise FeatureUnavailableError("videos need the optional extra: pip install 'glimpse[video]'") from exc
    return av


def _histogram(rgb: np.ndarray) -> np.ndarray:
    """Normalised per-channel histograms of a small uint8[h, w, 3] picture: float32[3 * _HIST_BINS], sum 3."""
    counts = [np.bincount(rgb[..., c].ravel() // (256 // _HIST_BINS), minlength=_HIST_BINS) for c in range(3)]
    hist = np.concatenate(counts).astype(np.float32)
    return hist / max(1, rgb.shape[0] * rgb.shape[1])


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    """Half the L1 distance per channel, averaged: 0 (same colours) to 1 (no colour in common)."""
    return float(np.abs(a - b).sum() / 6.0)


def _upright(image: Image.Image, rotation: int) -> Image.Image:
    """Undo a display rotation (degrees counter-clockwise, FFmpeg's convention)."""
    turn = rotation % 360
    if turn == 90:
        return image.transpose(Image.Transpose.ROTATE_90)
    if turn == 180:
        return image.transpose(Image.Transpose.ROTATE_180)
    if turn == 270:
        return image.transpose(Image.Transpose.ROTATE_270)
    return image


def _scaled_size(width: int, height: int, min_side: int | None) -> tuple[int, int]:
    if min_side is None or min(width, height) <= min_side:
        return width, height
    scale = min_side / min(width, height)
    # even sides: some pixel-format conversions want them, and a pixel either way changes nothing for a model
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


@contextmanager
def _open_video(path: str | os.PathLike[str]) -> Iterator[tuple[Any, Any]]:
    """``(container, its first video stream)`` of ``path``, closed after; ``VideoError`` (one line) when the file
    cannot be opened or holds no video stream."""
    av = _av()
    try:
        container = av.open(os.fspath(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(f"cannot read video: {_reason(exc)}") from exc
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            raise VideoError("no video stream in the file" + (f" (it holds {', '.join(kinds)} only)" if kinds else ""))
        yield container, container.streams.video[0]


def sample_video(path: str | os.PathLike[str], rules: SamplingRules | None = None, *, min_side: int | None = 224,
                 progress: Callable[[float], None] | None = None) -> VideoScan:
    """Sample ``path``'s frames by ``rules``; ``min_side``: the shorter side of the frames returned (None: as
    stored). ``progress(fraction)`` hears how far the key-frame scan got (for long videos)."""
    rules = rules or SamplingRules()
    scan = VideoScan()
    with _open_video(path) as (container, stream):
        stream.thread_type = "AUTO"
        scan.codec = stream.codec_context.name
        scan.duration = stream_duration(stream, container)
        min_interval = rules.min_interval_s
        if scan.duration:
            min_interval = max(min_interval, scan.duration / rules.max_frames)
        max_interval = max(rules.max_interval_s, min_interval)
        keyframes = _scan_keyframes(stream, container, scan, rules, min_side, progress)
        chosen = _choose(keyframes, rules.scene_threshold, min_interval, max_interval, rules.max_frames)
        gaps = _gaps([t for t, _, _ in chosen], scan.duration, min_interval, max_interval,
                     rules.max_frames - len(chosen))
        filled = _decode_at(stream, container, gaps, scan, min_side) if gaps and scan.damaged is None else []
    frames = sorted([VideoFrame(t, image, reason) for t, image, reason in chosen] + filled,
                    key=lambda f: f.timestamp)
    scan.frames = frames[: rules.max_frames]
    if scan.frames and scan.width is None:
        scan.width, scan.height = scan.frames[0].image.size
    return scan


def stream_duration(stream, container) -> float | None:
    """A video stream's duration in seconds (the container's when the stream states none), or None."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _scan_keyframes(stream, container, scan: VideoScan, rules: SamplingRules, min_side: int | None,
                    progress: Callable[[float], None] | None) -> list[tuple[float, Image.Image, np.ndarray]]:
    """``(timestamp, upright image, histogram)`` of every key frame, in stream order."""
    av = _av()
    # Only the key-frame packets reach the decoder: the rest of the stream is demuxed (read) but never decoded.
    # A key frame decodes on its own, and it is what a player seeks to.
    found: list[tuple[float, Image.Image, np.ndarray]] = []

    # Fed key frames only, a decoder with frame threads or B-frame delay may give frames out late and without
    # their timestamps; they come out in the order they went in, so each takes its packet's time from a queue.
    times: deque[float] = deque()

    def take(frames) -> None:
        for frame in frames:
            scan.keyframes_decoded += 1
            scan.frames_decoded += 1
            timestamp, image, hist = _picture(frame, scan, min_side)
            found.append((times.popleft() if times else timestamp, image, hist))
            if progress is not None and scan.duration:
                progress(min(1.0, found[-1][0] / scan.duration))

    try:
        for packet in container.demux(stream):
            if packet.size == 0 or not packet.is_keyframe:
                continue
            if packet.pts is not None and packet.time_base is not None:
                times.append(float(packet.pts * packet.time_base))
            take(stream.decode(packet))
        take(stream.decode(None))  # flush
    except (av.error.FFmpegError, EOFError, ValueError) as exc:  # truncated or corrupt: keep what was decoded
        scan.damaged = _reason(exc)
    finally:
        stream.codec_context.flush_buffers()
    found.sort(key=lambda item: item[0])
    return found


def _picture(frame, scan: VideoScan, min_side: int | None) -> tuple[float, Image.Image, np.ndarray]:
    rotation = int(getattr(frame, "rotation", 0) or 0)
    width, height = _scaled_size(frame.width, frame.height, min_side)
    image = _upright(frame.to_image(width=width, height=height), rotation)
    small = frame.to_ndarray(width=_HIST_SIDE, height=_HIST_SIDE, format="rgb24")
    if scan.width is None:
        scan.rotation = rotation % 360
        upright_w, upright_h = (frame.height, frame.width) if scan.rotation in (90, 270) else (frame.width,
                                                                                              frame.height)
        scan.width, scan.height = upright_w, upright_h
    timestamp = float(frame.time) if frame.time is not None and math.isfinite(frame.time) else 0.0
    return timestamp, image, _histogram(small)


def _choose(keyframes: list[tuple[float, Image.Image, np.ndarray]], threshold: float, min_interval: float,
            max_interval: float, cap: int) -> list[tuple[float, Image.Image, str]]:
    """Key frames at cuts (and where ``max_interval`` elapsed), at least ``min_interval`` apart, at most ``cap``."""
    chosen: list[tuple[float, Image.Image, str]] = []
    previous: np.ndarray | None = None
    for timestamp, image, hist in keyframes:
        cut = previous is not None and _distance(previous, hist) > threshold
        previous = hist
        if not chosen:
            chosen.append((timestamp, image, "start"))
            continue
        since = timestamp - chosen[-1][0]
        if (cut and since >= min_interval) or since >= max_interval:
            chosen.append((timestamp, image, "scene" if cut else "interval"))
    if len(chosen) > cap:  # cuts denser than the cap allows: keep an even spread of them
        keep = np.linspace(0, len(chosen) - 1, cap).round().astype(int)
        chosen = [chosen[i] for i in sorted(set(keep.tolist()))]
    return chosen


def _gaps(times: list[float], duration: float | None, min_interval: float, max_interval: float,
          room: int) -> list[float]:
    """Timestamps to decode so that no stretch between samples (or before the end) exceeds ``max_interval``."""
    if room <= 0 or not times:
        return []
    bounds = [*times, duration if duration else times[-1]]
    wanted: list[float] = []
    for start, end in itertools.pairwise(bounds):
        if end - start > max_interval:
            pieces = math.ceil((end - start) / max_interval)
            step = (end - start) / pieces
            wanted += [start + step * i for i in range(1, pieces) if step * i >= min_interval]
    if len(wanted) > room:
        keep = np.linspace(0, len(wanted) - 1, room).round().astype(int)
        wanted = [wanted[i] for i in sorted(set(keep.tolist()))]
    return wanted


def _decode_at(stream, container, times: list[float], scan: VideoScan, min_side: int | None
               ) -> list[VideoFrame]:
    """The first frame at or after each of ``times`` (seek to the key frame before it, decode forward)."""
    av = _av()
    out: list[VideoFrame] = []
    base = stream.time_base
    for target in times:
        try:
            container.seek(int(target / base), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                scan.frames_decoded += 1
                if frame.time is not None and frame.time + 1e-6 >= target:
                    timestamp, image, _ = _picture(frame, scan, min_side)
                    out.append(VideoFrame(timestamp, image, "interval"))
                    break
        except (av.error.FFmpegError, EOFError, ValueError) as exc:
            scan.damaged = _reason(exc)
            break
    return out


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200].rstrip(".").lower()


# -- recognising and describing video files ---------------------------------------------------------------------
_ISO_BMFF_VIDEO_BRANDS = frozenset({b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V ",
                                    b"qt  ", b"3gp4", b"3gp5", b"3gp6", b"3g2a", b"dash", b"MSNV", b"XAVC"})


def is_video_file(path: str | os.PathLike[str], head: bytes) -> bool:
    """Whether a file is a video to sample: by its extension (``VIDEO_EXTENSIONS``), or by its first bytes (an
    MP4/QuickTime ``ftyp`` with a video brand, Matroska/WebM, AVI) for a video whose name says nothing."""
    if os.path.splitext(os.fsdecode(path))[1].lower() == ".ts":
        # MPEG transport stream, or TypeScript source: a stream starts with 0x47 sync bytes every 188 bytes.
        return bool(head) and head[0] == 0x47 and (len(head) <= 188 or head[188] == 0x47)
    if is_video_name(path):
        return True
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in _ISO_BMFF_VIDEO_BRANDS:
        return True
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska, WebM
        return True
    return head[:4] == b"RIFF" and head[8:12] == b"AVI "


def frame_at(path: str | os.PathLike[str], timestamp: float, *, min_side: int | None = None) -> Image.Image:
    """The upright frame shown at ``timestamp`` seconds (the first one at or after it; seeking to the key frame
    before it), shorter side ``min_side``: a sampled frame's picture again, for its thumbnail. ``VideoError``
    when there is none."""
    scan = VideoScan()
    with _open_video(path) as (container, stream):
        frames = _decode_at(stream, container, [max(0.0, timestamp - 1e-3)], scan, min_side)
    if not frames:
        raise VideoError(f"no frame at {timestamp:.3f} s" + (f" ({scan.damaged})" if scan.damaged else ""))
    return frames[0].image
