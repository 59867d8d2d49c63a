"""Thumbnails cached as JPEG files under ``<library>/thumbs/`` — never anywhere else.

A thumbnail's file name is built only from the catalog id (an int), the content hash (hex) and the
size, so it cannot point outside the cache directory whatever the image path is, and a changed image
(new hash) gets a new thumbnail instead of a stale one.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from glimpse.catalog import FileRecord, is_video_format
from glimpse.errors import UserInputError
from glimpse.images import open_image

THUMBS_DIRNAME = "thumbs"
DEFAULT_THUMB_SIZE = 256
_HEX = re.compile(r"^[0-9a-f]+$")


class ThumbnailCache:
    """Makes and caches ``size``-pixel (longest side) JPEG thumbnails under ``library_dir/thumbs``."""

    def __init__(self, library_dir: str | os.PathLike[str], size: int = DEFAULT_THUMB_SIZE,
                 max_megapixels: float = 100.0) -> None:
        if size < 16 or size > 2048:
            raise UserInputError(f"thumbnail size must be between 16 and 2048 pixels, got {size}")
        self.directory = Path(library_dir).resolve() / THUMBS_DIRNAME
        self.size = size
        self.max_megapixels = max_megapixels

    def path_for(self, record: FileRecord, time: float | None = None) -> Path:
        """The cache file of ``record`` (a video's: of its frame at ``time`` seconds); its name depends only on id,
        content hash, size and time."""
        version = record.hash if record.hash and _HEX.match(record.hash) else str(int(record.mtime_ns))
        at = f"-t{round(float(time) * 1000)}" if time is not None else ""
        path = self.directory / f"{int(record.id)}-{version[:20]}-{self.size}{at}.jpg"
        # The name is built from an int and hex digits, so this cannot fail; checked anyway because
        # writing outside the library directory must be impossible, not merely unlikely.
        if path.parent != self.directory:
            raise UserInputError(f"refusing to write a thumbnail outside {self.directory}")
        return path

    def get(self, record: FileRecord, source: str, time: float | None = None) -> Path:
        """The cached thumbnail of ``record`` (decoded from ``source``, its servable real path), made if needed;
        for a video, of its frame at ``time`` seconds (default: its start).

        Raises ImageError when the source cannot be decoded (e.g. it changed on disk into a non-image).
        """
        video = is_video_format(record.format)
        if video and time is None:
            time = 0.0
        target = self.path_for(record, time if video else None)
        if target.is_file():
            return target
        if video:
            from glimpse.video import frame_at

            image = frame_at(source, float(time or 0.0), min_side=self.size)
        else:
            image = open_image(source, min_side=self.size, max_megapixels=self.max_megapixels).image
        image.thumbnail((self.size, self.size))
        self.directory.mkdir(parents=True, exist_ok=True)
        # Write then rename: concurrent requests for the same thumbnail never see half a file.
        partial = self.directory / f".{target.name}.{uuid.uuid4().hex}.tmp"
        try:
            image.save(partial, format="JPEG", quality=85, optimize=True)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target
