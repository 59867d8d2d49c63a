"""Video frame sampling on videos encoded in the test (H.264 and VP9, known cuts, rotation, damage)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("av")

import itertools

from glimpse.errors import UserInputError
from glimpse.video import SamplingRules, VideoError, is_video_name, sample_video
from video_fixtures import SCENE_COLOURS, cut_times, write_audio_only, write_video

SCENES = [3.0, 2.5, 4.0, 2.0, 3.5]  # seconds; cuts at 3.0, 5.5, 9.5, 11.5; ends at 15.0


def scene_of(timestamp: float, scenes: list[float]) -> int:
    bounds = cut_times(scenes)
    return next(i for i in range(len(scenes)) if bounds[i] - 1e-6 <= timestamp < bounds[i + 1] - 1e-6)


def colour_scene(image) -> int:
    """Which scene's colour the frame shows (the drifting white square is a minority of pixels)."""
    pixels = np.asarray(image, dtype=np.float32).reshape(-1, 3)
    median = np.median(pixels, axis=0)
    return int(np.argmin([np.abs(median - np.array(c)).sum() for c in SCENE_COLOURS]))


# A key frame a second, as phones record (scenes here last 2 s or more).
@pytest.mark.parametrize("codec,suffix,gop", [("libx264", ".mp4", 24), ("libvpx-vp9", ".webm", 24)])
def test_every_scene_yields_a_frame_at_a_time_inside_it(tmp_path, codec, suffix, gop):
    path = write_video(tmp_path / f"scenes{suffix}", SCENES, codec=codec, gop=gop)
    rules = SamplingRules(min_interval_s=1.0, max_interval_s=30.0, max_frames=50)
    scan = sample_video(path, rules, min_side=48)
    assert scan.damaged is None and scan.duration == pytest.approx(15.0, abs=0.1)
    seen = [scene_of(f.timestamp, SCENES) for f in scan.frames]
    assert set(seen) == set(range(len(SCENES)))  # every scene at least once
    for frame in scan.frames:  # the picture is the scene its timestamp says
        assert colour_scene(frame.image) == scene_of(frame.timestamp, SCENES)
    assert all(b - a >= 1.0 - 1e-6 for a, b in zip([f.timestamp for f in scan.frames],
                                                   [f.timestamp for f in scan.frames][1:], strict=False))
    # Only key frames were decoded for the scan: far fewer than the video's 360 frames.
    assert scan.frames_decoded < 360 // 4
    assert min(scan.frames[0].image.size) == 48 and (scan.width, scan.height) == (160, 96)


def test_a_cap_and_the_max_interval(tmp_path):
    path = write_video(tmp_path / "long_scene.mp4", [12.0], gop=300)  # one scene, one key frame
    scan = sample_video(path, SamplingRules(min_interval_s=1.0, max_interval_s=4.0, max_frames=10), min_side=None)
    times = [f.timestamp for f in scan.frames]
    assert times[0] == 0.0 and len(times) >= 3  # 0, ~4, ~8: filled by seeking where no key frame was
    assert all(b - a <= 4.0 + 0.1 for a, b in itertools.pairwise(times))
    capped = sample_video(write_video(tmp_path / "cuts.mp4", [1.0] * 6, gop=24), SamplingRules(
        min_interval_s=0.5, max_interval_s=30, max_frames=3), min_side=None)
    assert len(capped.frames) == 3  # six scenes, a cap of three


def test_rotation_metadata_turns_frames_upright(tmp_path):
    path = write_video(tmp_path / "phone.mp4", [1.0], size=(160, 96), rotation=90)
    scan = sample_video(path, min_side=None)
    assert scan.rotation in (90, 270)
    assert scan.frames[0].image.size == (96, 160) and (scan.width, scan.height) == (96, 160)


def test_a_truncated_video_keeps_what_was_decoded(tmp_path):
    full = write_video(tmp_path / "full.mp4", SCENES).read_bytes()
    cut = tmp_path / "cut.mkv"
    mkv = write_video(tmp_path / "full.mkv", SCENES).read_bytes()  # Matroska is streamable: readable up to the cut
    cut.write_bytes(mkv[: len(mkv) // 2])
    scan = sample_video(cut, SamplingRules(min_interval_s=1.0), min_side=48)
    assert scan.frames and scene_of(scan.frames[0].timestamp, SCENES) == 0
    assert max(f.timestamp for f in scan.frames) < 15.0
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(full[: len(full) // 2])  # an MP4 cut in half usually lost its index (moov at the end)
    try:
        scan = sample_video(broken, min_side=48)
    except VideoError as exc:
        assert "\n" not in str(exc)


def test_files_without_video_are_one_line_errors(tmp_path):
    audio = write_audio_only(tmp_path / "voice.mkv")
    with pytest.raises(VideoError, match=r"no video stream.*audio"):
        sample_video(audio)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoError, match="cannot read video"):
        sample_video(junk)
    assert is_video_name("clip.MOV") and not is_video_name("photo.jpg")


def test_rules_are_checked():
    with pytest.raises(UserInputError):
        SamplingRules(min_interval_s=10, max_interval_s=5)
    with pytest.raises(UserInputError):
        SamplingRules(max_frames=0)
