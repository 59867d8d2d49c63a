"""Capture metadata from EXIF written by Pillow, garbage values included, and the metadata filters' rules."""

from __future__ import annotations

import io
import os
import time

import pytest
from PIL import ExifTags, Image, TiffImagePlugin

from glimpse.errors import UserInputError
from glimpse.metadata import TAKEN_EXIF, TAKEN_MTIME, read_metadata
from glimpse.metafilter import MetadataFilter, Near, distance_km, parse_near, parse_period, within_radius


def _rational(value: float) -> TiffImagePlugin.IFDRational:
    return TiffImagePlugin.IFDRational(round(value * 10000), 10000)


def photo_exif(*, taken: str | None = "2023:06:01 14:03:22", offset: str | None = "+02:00",
               gps: tuple[float, str, float, str] | None = (48.858, "N", 2.2945, "E"),
               make: str | None = "Apple", model: str | None = "iPhone 13", lens: str | None = None,
               orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    if make is not None:
        exif[ExifTags.Base.Make] = make
    if model is not None:
        exif[ExifTags.Base.Model] = model
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    if taken is not None:
        sub[ExifTags.Base.DateTimeOriginal] = taken
    if offset is not None:
        sub[ExifTags.Base.OffsetTimeOriginal] = offset
    if lens is not None:
        sub[ExifTags.Base.LensModel] = lens
    if gps is not None:
        lat, lat_ref, lon, lon_ref = gps
        gps_ifd = exif.get_ifd(ExifTags.IFD.GPSInfo)

        def dms(v: float) -> tuple:
            d = int(v)
            m = int((v - d) * 60)
            s = (v - d - m / 60) * 3600
            return (_rational(d), _rational(m), _rational(s))

        gps_ifd[ExifTags.GPS.GPSLatitudeRef] = lat_ref
        gps_ifd[ExifTags.GPS.GPSLatitude] = dms(lat)
        gps_ifd[ExifTags.GPS.GPSLongitudeRef] = lon_ref
        gps_ifd[ExifTags.GPS.GPSLongitude] = dms(lon)
    return exif


def roundtrip(exif: Image.Exif) -> Image.Exif:
    """Write a JPEG carrying ``exif`` and read its EXIF back, as the indexer does."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (90, 120, 200)).save(buf, "JPEG", exif=exif)
    buf.seek(0)
    with Image.open(buf) as im:
        return im.getexif()


def test_reads_date_offset_gps_camera_from_a_jpeg():
    meta = read_metadata(roundtrip(photo_exif(lens="iPhone 13 back camera 5.1mm f/1.6", orientation=6)))
    assert meta.taken_local == "2023-06-01T14:03:22"
    assert meta.utc_offset == 120
    assert meta.taken_source == TAKEN_EXIF
    assert meta.latitude == pytest.approx(48.858, abs=1e-4)
    assert meta.longitude == pytest.approx(2.2945, abs=1e-4)
    assert (meta.make, meta.model, meta.camera) == ("Apple", "iPhone 13", "Apple iPhone 13")
    assert meta.lens == "iPhone 13 back camera 5.1mm f/1.6"
    assert meta.orientation == 6
    assert meta.taken_utc == 1685621002.0  # 14:03:22 at +02:00 is 2023-06-01T12:03:22Z
    assert meta.to_dict()["camera"] == "Apple iPhone 13"


def test_taken_utc_is_the_instant_when_the_offset_is_known():
    meta = read_metadata(roundtrip(photo_exif(taken="2020:01:01 00:30:00", offset="+01:00")))
    assert meta.taken_utc == 1577835000.0  # 2019-12-31T23:30:00Z
    assert read_metadata(roundtrip(photo_exif(offset=None))).taken_utc is None


def test_south_and_west_are_negative_and_a_model_naming_its_make_is_not_doubled():
    meta = read_metadata(roundtrip(photo_exif(gps=(33.8688, "S", 151.2093, "W"), make="Canon",
                                              model="Canon EOS R5")))
    assert meta.latitude == pytest.approx(-33.8688, abs=1e-4)
    assert meta.longitude == pytest.approx(-151.2093, abs=1e-4)
    assert meta.camera == "Canon EOS R5"


@pytest.mark.parametrize("garbage", ["0000:00:00 00:00:00", "    :  :     :  :  ", "2023:13:45 25:61:00",
                                     "yesterday", ""])
def test_garbage_dates_fall_back_to_the_mtime_marked_as_such(garbage):
    mtime_ns = 1_600_000_000 * 10**9
    meta = read_metadata(roundtrip(photo_exif(taken=garbage)), mtime_ns)
    assert meta.taken_source == TAKEN_MTIME
    assert meta.taken_local == time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(1_600_000_000))
    assert meta.utc_offset is None  # an offset belongs to the EXIF date, not to the stand-in


def test_garbage_gps_and_offsets_are_dropped_not_raised():
    exif = photo_exif(offset="+99:99", gps=(48.0, "N", 2.0, "E"))
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitude] = (_rational(400), _rational(0), _rational(0))  # 400° north
    meta = read_metadata(roundtrip(exif))
    assert meta.utc_offset is None
    assert (meta.latitude, meta.longitude) == (None, None)  # half a position is no position
    assert meta.taken_local == "2023-06-01T14:03:22"


def test_no_exif_at_all():
    assert read_metadata(None) == read_metadata(Image.Exif())
    meta = read_metadata(None, mtime_ns=os.stat(__file__).st_mtime_ns)
    assert meta.taken_source == TAKEN_MTIME and meta.camera is None and meta.latitude is None


# -- filters --------------------------------------------------------------------------------------------
def test_periods_are_starts_of_periods():
    assert parse_period("2023", "--after") == "2023-01-01T00:00:00"
    assert parse_period("2023-6", "--after") == "2023-06-01T00:00:00"
    assert parse_period("2024-02-29T07:05", "--before") == "2024-02-29T07:05:00"
    for bad in ("23-01", "2023/01", "2023-02-30", "June"):
        with pytest.raises(UserInputError, match="--after"):
            parse_period(bad, "--after")


def test_filter_parse_checks_the_combination():
    f = MetadataFilter.parse(after="2023-01", before="2024-06", camera=" iPhone ", near="48.85,2.35,20km")
    assert (f.after, f.before, f.camera) == ("2023-01-01T00:00:00", "2024-06-01T00:00:00", "iPhone")
    assert f.near == Near(48.85, 2.35, 20.0) and f.active
    assert not MetadataFilter.parse().active
    with pytest.raises(UserInputError, match="not earlier"):
        MetadataFilter.parse(after="2024", before="2023")
    with pytest.raises(UserInputError, match="--camera"):
        MetadataFilter.parse(camera="  ")


def test_near_forms_and_errors():
    assert parse_near("48.85, 2.35") == Near(48.85, 2.35, 10.0)
    assert parse_near("1,2,500m").radius_km == pytest.approx(0.5)
    assert parse_near("1,2,3").radius_km == 3.0
    for bad in ("48.85", "a,b", "91,0", "0,181", "1,2,far", "1,2,0km", "1,2,3,4"):
        with pytest.raises(UserInputError, match="--near"):
            parse_near(bad)


def test_distances_and_bounding_boxes():
    # Paris (Notre-Dame) to London (Trafalgar Square): about 344 km.
    assert distance_km(48.853, 2.3499, 51.508, -0.1281) == pytest.approx(344, abs=3)
    near = Near(48.85, 2.35, 20.0)
    assert within_radius(near, 48.95, 2.35)  # ~11 km north
    assert not within_radius(near, 49.05, 2.35)  # ~22 km north
    lat_min, lat_max, lon_min, lon_max = near.bounding_box()
    assert lat_min < 48.85 - 0.17 and lat_max > 48.85 + 0.17 and lon_min < 2.35 - 0.26 and lon_max > 2.35 + 0.26
    # Crossing the antimeridian or a pole: the box gives up on longitude, the exact test still decides.
    assert Near(0.0, 179.9, 50).bounding_box()[2:] == (-180.0, 180.0)
    assert within_radius(Near(0.0, 179.9, 50), 0.0, -179.9)
    assert Near(89.99, 0.0, 5).bounding_box()[2:] == (-180.0, 180.0)
