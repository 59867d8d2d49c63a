"""Filters on capture metadata (``--after``, ``--before``, ``--camera``, ``--near``): parsing and matching.

The one place these rules live; the catalog turns a :class:`MetadataFilter` into SQL and calls
:func:`within_radius` for the exact distance test after its bounding-box prefilter.

* Dates are periods: ``2023``, ``2023-06``, ``2023-06-01`` or ``2023-06-01T14:00``. ``--after P`` keeps photos
  taken at or after the start of P; ``--before P`` keeps those taken before the start of P (so
  ``--after 2023-01 --before 2024-06`` is January 2023 through May 2024). Times are the local wall-clock time
  the photo was taken (see ``glimpse.metadata``).
* ``--camera TEXT``: case-insensitive substring of make + model ("iphone", "Canon EOS").
* ``--near LAT,LON[,RADIUS]``: RADIUS as ``20km``, ``500m`` or a bare number of kilometres (default 10 km);
  great-circle distance on a sphere of radius 6371.0088 km.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from glimpse.errors import UserInputError

SORT_SCORE = "score"  # best match first (the default)
SORT_DATE = "date"  # the same hits, newest capture first, undated ones last
SORTS = (SORT_SCORE, SORT_DATE)
EARTH_RADIUS_KM = 6371.0088  # the IUGG mean radius
DEFAULT_RADIUS_KM = 10.0
_PERIOD = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2}))?)?)?)?$")
_RADIUS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(km|m)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Near:
    """A circle on the globe: centre in decimal degrees, radius in kilometres."""

    latitude: float
    longitude: float
    radius_km: float

    def bounding_box(self) -> tuple[float, float, float, float]:
        """``(lat_min, lat_max, lon_min, lon_max)`` enclosing the circle (the whole longitude range near a pole
        or when the box would cross the antimeridian — the exact test then decides)."""
        dlat = math.degrees(self.radius_km / EARTH_RADIUS_KM)
        lat_min, lat_max = self.latitude - dlat, self.latitude + dlat
        cos_lat = math.cos(math.radians(self.latitude))
        if lat_min <= -90 or lat_max >= 90 or cos_lat < 1e-6:
            return max(lat_min, -90.0), min(lat_max, 90.0), -180.0, 180.0
        dlon = math.degrees(self.radius_km / (EARTH_RADIUS_KM * cos_lat))
        lon_min, lon_max = self.longitude - dlon, self.longitude + dlon
        if lon_min < -180 or lon_max > 180:
            return lat_min, lat_max, -180.0, 180.0
        return lat_min, lat_max, lon_min, lon_max


@dataclass(frozen=True)
class MetadataFilter:
    """Bounds on the capture metadata; every set field must hold. ``after``/``before`` are ISO local times."""

    after: str | None = None
    before: str | None = None
    camera: str | None = None
    near: Near | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.after, self.before, self.camera, self.near))

    @classmethod
    def parse(cls, *, after: str | None = None, before: str | None = None, camera: str | None = None,
              near: str | None = None) -> MetadataFilter:
        """From the CLI/API strings; UserInputError naming the option and the accepted forms."""
        start = parse_period(after, "--after") if after else None
        end = parse_period(before, "--before") if before else None
        if start is not None and end is not None and start >= end:
            raise UserInputError(f"--after {after} is not earlier than --before {before}: no photo can match both")
        text = camera.strip() if camera else None
        if camera is not None and not text:
            raise UserInputError("--camera is empty; give part of a camera's make or model, e.g. --camera iphone")
        return cls(start, end, text, parse_near(near) if near else None)


def check_sort(sort: str) -> str:
    """``sort`` if it is one of ``SORTS``, else UserInputError naming them."""
    if sort not in SORTS:
        raise UserInputError(f"--sort {sort!r}: give one of {', '.join(SORTS)}")
    return sort


def parse_period(value: str, option: str) -> str:
    """The start of a period as ISO ``YYYY-MM-DDTHH:MM:SS``."""
    match = _PERIOD.match(value.strip())
    if match is None:
        raise UserInputError(f"{option} {value!r} is not a date; use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM")
    year, month, day, hour, minute, second = (int(g) if g else None for g in match.groups())
    try:
        start = datetime(year or 1, month or 1, day or 1, hour or 0, minute or 0, second or 0)
    except ValueError as exc:
        raise UserInputError(f"{option} {value!r} is not a real date ({exc})") from exc
    return start.isoformat(timespec="seconds")


def parse_near(value: str) -> Near:
    """``"48.85,2.35,20km"`` → Near(48.85, 2.35, 20.0)."""
    parts = [p.strip() for p in value.split(",")]
    usage = "use --near LAT,LON[,RADIUS], e.g. --near 48.85,2.35,20km (radius in km or m; default 10km)"
    if len(parts) not in (2, 3):
        raise UserInputError(f"--near {value!r}: {usage}")
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError as exc:
        raise UserInputError(f"--near {value!r}: latitude and longitude must be numbers; {usage}") from exc
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise UserInputError(f"--near {value!r}: latitude must be within ±90 and longitude within ±180")
    radius = DEFAULT_RADIUS_KM
    if len(parts) == 3:
        match = _RADIUS.match(parts[2])
        if match is None:
            raise UserInputError(f"--near {value!r}: the radius {parts[2]!r} is not a distance; {usage}")
        radius = float(match.group(1)) / (1000.0 if (match.group(2) or "km").lower() == "m" else 1.0)
        if radius <= 0:
            raise UserInputError(f"--near {value!r}: the radius must be more than 0")
    return Near(lat, lon, radius)


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def within_radius(near: Near, latitude: float, longitude: float) -> bool:
    return distance_km(near.latitude, near.longitude, latitude, longitude) <= near.radius_km


class MetadataCheck:
    """``check(file_id) -> bool``: whether a file's metadata passes ``where``, asked of the catalog one page of
    candidates at a time (``catalog.ids_matching(where, among=ids)``) and remembered — for broad filters, where
    checking a search's candidates is cheaper than listing every matching id."""

    PAGE = 256

    def __init__(self, catalog: Any, where: MetadataFilter) -> None:
        self._catalog = catalog
        self._where = where
        self._known: dict[int, bool] = {}

    def prefetch(self, ids: list[int]) -> None:
        """Look up ``ids`` (and remember them) in one query."""
        unknown = [i for i in dict.fromkeys(ids) if i not in self._known]
        for start in range(0, len(unknown), self.PAGE):
            page = unknown[start:start + self.PAGE]
            passing = self._catalog.ids_matching(self._where, among=page)
            self._known.update((i, i in passing) for i in page)

    def __call__(self, file_id: int) -> bool:
        if file_id not in self._known:
            self.prefetch([file_id])
        return self._known[file_id]
