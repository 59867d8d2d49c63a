"""Capture metadata of a photo: when, where, with what — read once per content hash from its EXIF.

What is read (EXIF 2.32 tag numbers, IFD0 / Exif IFD / GPS IFD):

* **capture time**: DateTimeOriginal (else DateTimeDigitized) with OffsetTimeOriginal (else OffsetTimeDigitized,
  else OffsetTime). Kept as the *local wall-clock time* the camera recorded (``"2023-06-01T14:03:22"``, which
  sorts as text) plus the UTC offset when the file states one: "photos of June 2023" means local dates, and
  most cameras record no offset at all. Without a usable EXIF date the file's modification time (in this
  machine's time zone) stands in, with ``taken_source = "mtime"`` so nobody mistakes it for a capture time.
* **place**: GPSLatitude/GPSLongitude with their N/S, E/W references, as signed decimal degrees.
* **camera**: Make, Model, LensModel (trimmed; NUL padding and blank strings dropped); orientation 1–8.

Garbage is common in real files (``"0000:00:00 00:00:00"``, blank dates, zero denominators, latitudes of 400°,
NaNs): every field that cannot be read is left out (``None``), never raised — the image itself is fine.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from PIL import ExifTags, Image

TAKEN_EXIF = "exif"
TAKEN_MTIME = "mtime"

_DATE = re.compile(r"^\s*(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"^\s*([+-])(\d{2}):(\d{2})\s*$")
# Tags of the Exif IFD (ExifTags.Base names them; numbers here so a reader sees what EXIF calls them).
_DATE_TIME_ORIGINAL, _DATE_TIME_DIGITIZED = 0x9003, 0x9004
_OFFSET_TIME, _OFFSET_TIME_ORIGINAL, _OFFSET_TIME_DIGITIZED = 0x9010, 0x9011, 0x9012
_LENS_MODEL = 0xA434
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4


@dataclass(frozen=True)
class PhotoMetadata:
    """What the catalog keeps about a photo's capture.

    ``taken_local``: ISO local time ``YYYY-MM-DDTHH:MM:SS`` (sortable as text); ``utc_offset``: minutes east of
    UTC when known; ``taken_source``: ``"exif"`` or ``"mtime"`` (a stand-in, not a capture time).
    ``latitude``/``longitude``: decimal degrees (south and west negative). ``orientation``: EXIF 1–8.
    Videos (``glimpse.video.read_video_metadata``) fill the same fields from their container, and ``duration``.
    """

    taken_local: str | None = None
    utc_offset: int | None = None
    taken_source: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    make: str | None = None
    model: str | None = None
    lens: str | None = None
    orientation: int | None = None
    duration: float | None = None  # seconds, for videos

    @property
    def camera(self) -> str | None:
        """Make and model as people say them ("Apple iPhone 13", not "Apple Apple iPhone 13")."""
        if self.model and self.make and not self.model.lower().startswith(self.make.lower().split()[0]):
            return f"{self.make} {self.model}"
        return self.model or self.make

    @property
    def taken_utc(self) -> float | None:
        """POSIX seconds of the capture when the offset is known, else None (a local time is no instant)."""
        if self.taken_local is None or self.utc_offset is None:
            return None
        local = datetime.fromisoformat(self.taken_local).replace(tzinfo=UTC)
        return (local - timedelta(minutes=self.utc_offset)).timestamp()

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        if self.camera:
            data["camera"] = self.camera
        return data


def read_metadata(exif: Image.Exif | None, mtime_ns: int | None = None) -> PhotoMetadata:
    """The metadata in ``exif`` (``Image.getexif()`` of the opened image; None when it has none), with the file's
    modification time (ns) standing in for a missing capture time. Never raises for bad values."""
    if exif is None:
        exif = Image.Exif()
    base = _safe_ifd(exif, None)
    sub = _safe_ifd(exif, ExifTags.IFD.Exif)
    gps = _safe_ifd(exif, ExifTags.IFD.GPSInfo)
    taken = _exif_date(sub.get(_DATE_TIME_ORIGINAL)) or _exif_date(sub.get(_DATE_TIME_DIGITIZED))
    offset = None
    if taken is not None:
        offset = next((o for o in map(_exif_offset, (sub.get(_OFFSET_TIME_ORIGINAL), sub.get(_OFFSET_TIME_DIGITIZED),
                                                   sub.get(_OFFSET_TIME))) if o is not None), None)
        source: str | None = TAKEN_EXIF
    elif mtime_ns is not None:
        taken, source = local_from_mtime(mtime_ns), TAKEN_MTIME
    else:
        source = None
    latitude = _gps_degrees(gps.get(_GPS_LAT), gps.get(_GPS_LAT_REF), limit=90.0, negative="S")
    longitude = _gps_degrees(gps.get(_GPS_LON), gps.get(_GPS_LON_REF), limit=180.0, negative="W")
    if latitude is None or longitude is None:  # half a position is no position
        latitude = longitude = None
    orientation = base.get(ExifTags.Base.Orientation)
    return PhotoMetadata(
        taken_local=taken, utc_offset=offset, taken_source=source, latitude=latitude, longitude=longitude,
        make=_text(base.get(ExifTags.Base.Make)), model=_text(base.get(ExifTags.Base.Model)),
        lens=_text(sub.get(_LENS_MODEL)),
        orientation=orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None,
    )


def _safe_ifd(exif: Image.Exif, ifd: ExifTags.IFD | None) -> dict[int, Any]:
    """One IFD as a dict; empty when it is missing or its bytes are broken (Pillow raises several types)."""
    try:
        return dict(exif) if ifd is None else dict(exif.get_ifd(ifd))
    except Exception:
        return {}


def _exif_date(value: Any) -> str | None:
    """``"2023:06:01 14:03:22"`` → ``"2023-06-01T14:03:22"``; None for blanks, zeros and impossible dates."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    match = _DATE.match(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = map(int, match.groups())
    try:
        moment = datetime(year, month, day, hour, minute, min(second, 59))  # a leap second "60" is kept as :59
    except ValueError:
        return None
    if not 1800 <= year <= 2200:  # cameras with a dead clock battery write 1970 — that is kept; 0001 is not
        return None
    return moment.isoformat(timespec="seconds")


def _exif_offset(value: Any) -> int | None:
    """``"+02:00"`` → 120 (minutes east of UTC); None when absent or not an offset within ±14 h."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    match = _OFFSET.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    total = int(hours) * 60 + int(minutes)
    if total > 14 * 60 or int(minutes) >= 60:
        return None
    return -total if sign == "-" else total


def local_from_mtime(mtime_ns: int) -> str:
    """A modification time (ns) as this machine's local ISO time: the stand-in for a missing capture time."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(mtime_ns / 1e9))


_ISO_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})\s*$")


def parse_iso_time(text: str) -> tuple[str | None, int | None]:
    """An ISO 8601 time as containers write it (``2023-05-01T14:00:00+0200``, ``…00.000000Z``) → ``(local ISO
    time, UTC offset in minutes or None)``; ``(None, None)`` for garbage, blanks and impossible dates."""
    local = _exif_date(text)
    if local is None:
        return None, None
    match = _ISO_OFFSET.search(text.strip())
    if match is None:
        return local, None
    mark = match.group(1)
    if mark == "Z":
        return local, 0
    digits = mark[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + int(digits[2:])
    return local, -minutes if mark[0] == "-" else minutes


def _gps_degrees(value: Any, ref: Any, *, limit: float, negative: str) -> float | None:
    """Degrees/minutes/seconds rationals (+ reference letter) → signed decimal degrees, or None if unusable."""
    if not isinstance(value, tuple | list) or not 1 <= len(value) <= 3:
        return None
    try:
        parts = [float(part) for part in value]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if any(not math.isfinite(p) or p < 0 for p in parts):
        return None
    degrees = sum(p / 60**i for i, p in enumerate(parts))
    if degrees > limit:
        return None
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", "replace")
    if isinstance(ref, str) and ref.strip().upper().startswith(negative):
        degrees = -degrees
    return round(degrees, 7)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value or None


# Bytes of a RAW file read for its EXIF: TIFF-structured RAWs keep IFD0 and the Exif IFD near the start.
RAW_EXIF_BYTES = 4 << 20


def read_file_metadata(path: str, mtime_ns: int | None = None) -> PhotoMetadata:
    """The capture metadata of the image file ``path`` from its header alone (no pixel is decoded); only the
    mtime stand-in when the file has no readable EXIF (or cannot be opened any more)."""
    from glimpse.images import check_content, open_regular_file
    from glimpse.raw import is_raw_name, tiff_exif
    exif: Image.Exif | None = None
    try:
        with open_regular_file(path) as fh:
            if is_raw_name(path):
                exif = tiff_exif(fh.read(RAW_EXIF_BYTES))
            else:
                check_content(fh)  # also makes the optional decoders (HEIC) known to Pillow
                with Image.open(fh) as im:  # lazy: reads the header, not the pixels
                    exif = im.getexif()
                    for ifd in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo):
                        _safe_ifd(exif, ifd)  # read while the file is open
    except Exception:  # an unreadable header only costs the metadata; the image was indexed on its own terms
        exif = None
    return read_metadata(exif, mtime_ns)
