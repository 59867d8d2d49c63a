"""Capture metadata of a video from its container (no frame is decoded), in the catalog's ``PhotoMetadata``."""

from __future__ import annotations

import math
import os
import re

from glimpse.metadata import TAKEN_EXIF, TAKEN_MTIME, PhotoMetadata, local_from_mtime, parse_iso_time
from glimpse.video import stream_duration

_ISO6709 = re.compile(r"^\s*([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)")


def read_video_metadata(path: str | os.PathLike[str], mtime_ns: int | None = None) -> PhotoMetadata:
    """The capture metadata a video container records (no frame is decoded): the recording time (QuickTime's
    local ``com.apple.quicktime.creationdate`` with its offset, else the container's UTC ``creation_time``), the
    place (ISO 6709 ``location``), make and model (QuickTime keys), and the ``duration`` in seconds. The file's
    mtime stands in for a missing time, as for photos. Never raises: an unreadable file gives the stand-in."""
    tags: dict[str, str] = {}
    duration: float | None = None
    try:
        import av

        with av.open(os.fspath(path), metadata_errors="ignore") as container:
            tags = {str(k).lower(): str(v) for k, v in container.metadata.items()}
            if container.streams.video:
                tags = {**{str(k).lower(): str(v) for k, v in container.streams.video[0].metadata.items()}, **tags}
                duration = stream_duration(container.streams.video[0], container)
    except Exception:  # a damaged header costs the metadata only
        pass
    taken = offset = None
    for key in ("com.apple.quicktime.creationdate", "creation_time", "date"):
        if key in tags:
            taken, offset = parse_iso_time(tags[key])
            if taken is not None:
                break
    source: str | None = TAKEN_EXIF if taken is not None else None
    if taken is None and mtime_ns is not None:
        taken, source = local_from_mtime(mtime_ns), TAKEN_MTIME
    latitude = longitude = None
    place = _ISO6709.match(tags.get("com.apple.quicktime.location.iso6709") or tags.get("location") or "")
    if place:
        lat, lon = float(place.group(1)), float(place.group(2))
        if abs(lat) <= 90 and abs(lon) <= 180 and (lat, lon) != (0.0, 0.0):
            latitude, longitude = lat, lon
    make = (tags.get("com.apple.quicktime.make") or tags.get("make") or "").strip() or None
    model = (tags.get("com.apple.quicktime.model") or tags.get("model") or "").strip() or None
    if duration is not None and not (math.isfinite(duration) and duration >= 0):
        duration = None
    return PhotoMetadata(taken_local=taken, utc_offset=offset, taken_source=source, latitude=latitude,
                         longitude=longitude, make=make, model=model, duration=duration)
