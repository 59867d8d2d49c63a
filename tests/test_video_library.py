"""Videos in a library: sampled frames become searchable items under their file (catalog v6), found by search as
(video, timestamp) hits, kept current by incremental runs (change, move, copy, delete), filtered by type and
capture metadata; bad video files are reported in one line and never stop a run."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

pytest.importorskip("av")

from PIL import Image

from conftest import DROP_V6, make_photos
from glimpse.catalog import SCHEMA_VERSION, is_video_format
from glimpse.errors import UserInputError
from glimpse.video import SamplingRules
from video_fixtures import cut_times, scene_picture, write_audio_only, write_video

SCENES = [3.0, 2.5, 4.0, 2.0, 3.5]  # cuts at 3.0, 5.5, 9.5, 11.5; 15 s
RULES = SamplingRules(min_interval_s=1.0, max_interval_s=30.0, max_frames=40)


def scene_of(seconds: float, scenes: list[float] = SCENES) -> int:
    bounds = cut_times(scenes)
    return next(i for i in range(len(scenes)) if bounds[i] - 1e-6 <= seconds < bounds[i + 1] - 1e-6)


def query_image(tmp_path, scene: int, scenes: list[float] = SCENES):
    """A picture of ``scene`` (mid-scene), saved as a PNG: what a user would search with."""
    bounds = cut_times(scenes)
    path = tmp_path / f"query-{scene}.png"
    Image.fromarray(scene_picture(scene, (bounds[scene] + bounds[scene + 1]) / 2, 160, 96)).save(path)
    return path


def vector_count(lib) -> int:
    lib.save_vector_index()
    return lib.status().to_dict()["index_vectors"]


@pytest.fixture()
def media(tmp_path):
    folder = tmp_path / "media"
    folder.mkdir()
    make_photos(folder, 3)
    write_video(folder / "scenes.mp4", SCENES, gop=24)
    write_video(folder / "two.webm", [4.0], codec="libvpx-vp9", gop=24, first_scene=5)  # a scene of its own
    return folder


def test_frames_are_items_and_a_scene_finds_its_video_at_a_time_inside_it(tmp_path, media, open_lib):
    lib = open_lib()
    report = lib.index([media], video_rules=RULES)
    assert (report.videos, report.failed, report.added) == (2, 0, 5)
    video = lib.catalog.file_by_path(str(media / "scenes.mp4"))
    assert is_video_format(video.format) and (video.width, video.height) == (160, 96)
    frames = lib.catalog.frames_of(video.id, lib.spec.key)
    assert {scene_of(t) for _, t in frames} == set(range(len(SCENES)))  # every scene at least once
    assert report.frames == len(frames) + len(lib.catalog.frames_of(lib.catalog.file_by_path(
        str(media / "two.webm")).id, lib.spec.key))
    # Frame ids share the files' id space: no frame id is a file id, and the vector index holds every item.
    file_ids = {r.id for r in lib.catalog.indexed_files()}
    assert not file_ids & lib.catalog.frame_ids()
    assert vector_count(lib) == 3 + report.frames
    status = lib.status()
    assert status.images == 3 and status.videos == {"videos": 2, "frames": report.frames}
    for scene in range(len(SCENES)):
        hit = lib.search_vector(lib.image_vector(str(query_image(tmp_path, scene))), k=1)[0]
        assert hit.id == video.id and hit.kind == "video" and hit.path == video.path
        assert scene_of(hit.time) == scene
        assert hit.meta["duration"] == pytest.approx(15.0, abs=0.1)


def test_a_video_is_one_hit_listing_its_best_frames(tmp_path, media, open_lib):
    lib = open_lib()
    lib.index([media], video_rules=RULES)
    vector = lib.image_vector(str(query_image(tmp_path, 2)))
    hits = lib.search_vector(vector, k=10, per_video=3)
    assert len({h.path for h in hits}) == len(hits) == 5  # 3 photos, 2 videos: each once
    video_hit = next(h for h in hits if h.path.endswith("scenes.mp4"))
    scores = [s for _, s, _ in video_hit.frames]
    assert len(video_hit.frames) == 3 and scores == sorted(scores, reverse=True)
    assert video_hit.time == video_hit.frames[0][0] and video_hit.score == pytest.approx(scores[0])
    # The frame id of a hit is a search key of its own ("more like this frame").
    again = lib.similar(video_hit.frames[0][2], k=1)[0]
    assert again.id == video_hit.id and again.time == video_hit.time
    only = lib.search_vector(vector, k=10, per_video=1)
    assert all(len(h.frames) <= 1 for h in only)
    assert {h.kind for h in lib.search_vector(vector, k=10, kind="video")} == {"video"}
    assert {h.kind for h in lib.search_vector(vector, k=10, kind="photo")} == {"photo"}
    with pytest.raises(UserInputError, match="unknown type"):
        lib.search_vector(vector, kind="film")
    with pytest.raises(UserInputError, match="is a video"):
        lib.similar(video_hit.id)
    assert [h.kind for h in lib.recent(10)].count("video") == 2


def test_incremental_runs_change_move_copy_and_delete_videos(tmp_path, media, open_lib):
    lib = open_lib()
    lib.index([media], video_rules=RULES)
    path = media / "scenes.mp4"
    video = lib.catalog.file_by_path(str(path))
    old_frames = {i for i, _ in lib.catalog.frames_of(video.id, lib.spec.key)}
    again = lib.index([media], video_rules=RULES)
    assert (again.unchanged, again.encoded, again.videos) == (5, 0, 0)

    write_video(path, [4.0, 4.0], gop=24)  # new content at the same path: re-sampled
    changed = lib.index([media], video_rules=RULES)
    assert (changed.updated, changed.videos) == (1, 1)
    new_frames = lib.catalog.frames_of(video.id, lib.spec.key)
    assert not old_frames & {i for i, _ in new_frames}  # the old frames and their vectors are gone
    assert {scene_of(t, [4.0, 4.0]) for _, t in new_frames} == {0, 1}
    assert vector_count(lib) == lib.catalog.count_embeddings(lib.spec.key)
    found = lib.search_vector(lib.image_vector(str(query_image(tmp_path, 1, [4.0, 4.0]))), k=1)[0]
    assert found.id == video.id and scene_of(found.time, [4.0, 4.0]) == 1

    (media / "clips").mkdir()
    shutil.move(path, media / "clips" / "moved.mp4")  # a move keeps the id and the frames, encodes nothing
    moved = lib.index([media], video_rules=RULES)
    assert (moved.moved, moved.encoded) == (1, 0)
    assert lib.catalog.file_by_path(str(media / "clips" / "moved.mp4")).id == video.id
    assert lib.catalog.frames_of(video.id, lib.spec.key) == new_frames

    shutil.copy(media / "clips" / "moved.mp4", media / "copy.mp4")  # same content: frames copied, not decoded
    copied = lib.index([media], video_rules=RULES)
    assert (copied.added, copied.reused, copied.encoded) == (1, 1, 0)
    twin = lib.catalog.file_by_path(str(media / "copy.mp4"))
    assert [t for _, t in lib.catalog.frames_of(twin.id, lib.spec.key)] == [t for _, t in new_frames]

    (media / "clips" / "moved.mp4").unlink()
    gone = lib.index([media], video_rules=RULES)
    assert gone.removed == 1 and lib.catalog.frames_of(video.id, lib.spec.key) == []
    assert vector_count(lib) == lib.catalog.count_embeddings(lib.spec.key)
    hits = lib.search_vector(lib.image_vector(str(query_image(tmp_path, 1, [4.0, 4.0]))), k=10)
    assert all(h.id != video.id for h in hits) and any(h.id == twin.id for h in hits)


def test_bad_videos_are_one_line_reports_and_the_run_goes_on(tmp_path, open_lib):
    folder = tmp_path / "bad"
    folder.mkdir()
    make_photos(folder, 2)
    write_audio_only(folder / "voice.mp4")
    (folder / "junk.mov").write_bytes(b"not a video at all" * 200)
    mkv = write_video(tmp_path / "full.mkv", SCENES, gop=24).read_bytes()
    (folder / "cut.mkv").write_bytes(mkv[: len(mkv) // 2])  # streamable: frames before the cut are kept
    write_video(folder / "phone.mp4", [1.5], rotation=90, gop=24)
    shutil.copy(write_video(tmp_path / "named.mp4", [1.5], gop=24), folder / "noname")  # known by its ftyp box
    lib = open_lib()
    report = lib.index([folder], video_rules=RULES)
    reasons = dict(report.errors)
    assert set(reasons) == {str(folder / "voice.mp4"), str(folder / "junk.mov")}
    assert "no video stream" in reasons[str(folder / "voice.mp4")] and "audio" in reasons[str(folder / "voice.mp4")]
    assert all("\n" not in r for r in reasons.values())
    assert report.videos == 3 and report.added == 5  # 2 photos + the cut, the phone video, the nameless one
    cut = lib.catalog.file_by_path(str(folder / "cut.mkv"))
    times = [t for _, t in lib.catalog.frames_of(cut.id, lib.spec.key)]
    assert times and max(times) < 15.0
    phone = lib.catalog.file_by_path(str(folder / "phone.mp4"))
    assert (phone.width, phone.height) == (96, 160)  # upright
    assert lib.catalog.frames_of(lib.catalog.file_by_path(str(folder / "noname")).id, lib.spec.key)
    # Fixing a file and re-running fixes the result.
    write_video(folder / "junk.mov", [1.0], gop=24)
    fixed = lib.index([folder], video_rules=RULES)
    assert (fixed.videos == 1 and not fixed.errors) or set(dict(fixed.errors)) == {str(folder / "voice.mp4")}


def test_the_cap_holds_for_a_long_video(tmp_path, open_lib):
    folder = tmp_path / "long"
    folder.mkdir()
    # Four hours (at 1 fps, to keep the file small) with a key frame a minute: 240 key frames, far over the cap.
    write_video(folder / "recording.mp4", [3600.0] * 4, fps=1, size=(64, 48), gop=60)
    lib = open_lib()
    report = lib.index([folder], video_rules=SamplingRules(max_frames=12))
    frames = lib.catalog.frames_of(lib.catalog.file_by_path(str(folder / "recording.mp4")).id, lib.spec.key)
    assert report.frames == len(frames) and 4 <= len(frames) <= 12
    assert {scene_of(t, [3600.0] * 4) for _, t in frames} == {0, 1, 2, 3}
    assert frames[-1][1] > 12000  # spread over the whole video, not bunched at its start
    assert lib.search_vector(lib.image_vector(frames[0][0]), k=1)[0].meta["duration"] == pytest.approx(14400, abs=2)


def test_video_capture_metadata_filters_and_sorts(tmp_path, open_lib):
    import av

    from glimpse.metafilter import MetadataFilter

    folder = tmp_path / "dated"
    folder.mkdir()
    make_photos(folder, 2)
    path = folder / "paris.mp4"
    with av.open(str(path), "w") as out:
        out.metadata["creation_time"] = "2023-05-01T12:30:00.000000Z"
        out.metadata["location"] = "+48.8577+002.2950/"
        stream = out.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(24):
            for packet in stream.encode(av.VideoFrame.from_ndarray(scene_picture(0, i / 12, 64, 48), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    lib = open_lib()
    lib.index([folder], video_rules=RULES)
    vector = lib.image_vector(str(folder / "img_000.jpg"))
    hits = lib.search_vector(vector, k=10, where=MetadataFilter.parse(after="2023-01", before="2023-06"))
    assert [h.path for h in hits] == [str(path)]
    meta = hits[0].meta
    assert meta["taken_local"] == "2023-05-01T12:30:00" and meta["utc_offset"] == 0
    assert meta["duration"] == pytest.approx(2.0, abs=0.1)
    near = lib.search_vector(vector, k=10, where=MetadataFilter.parse(near="48.85,2.35,20km"))
    assert [h.path for h in near] == [str(path)]


def test_a_v5_catalog_migrates_keeping_its_vectors(tmp_path, open_lib, media):
    photos = tmp_path / "photos"
    photos.mkdir()
    make_photos(photos, 4)
    lib = open_lib()
    lib.index([photos])
    before = lib.search_vector(lib.image_vector(str(photos / "img_001.jpg")), k=4)
    lib.close()
    with sqlite3.connect(tmp_path / "library" / "catalog.sqlite3") as db:  # what a version-5 catalog is
        db.executescript(DROP_V6 + "UPDATE meta SET value = '5' WHERE key = 'schema_version';")
    lib = open_lib()
    assert lib.catalog.schema_version == SCHEMA_VERSION == 6
    after = lib.search_vector(lib.image_vector(str(photos / "img_001.jpg")), k=4)
    assert [(h.id, round(h.score, 5)) for h in after] == [(h.id, round(h.score, 5)) for h in before]
    assert lib.index([photos]).encoded == 0  # nothing re-encoded
    report = lib.index([media], video_rules=RULES)  # and videos can join it
    assert report.videos == 2
    lib.remove([str(photos / "img_000.jpg")])  # a file's delete still takes its vector (trigger, not cascade)
    assert vector_count(lib) == lib.catalog.count_embeddings(lib.spec.key) == 3 + 3 + report.frames


def test_cli_search_type_video_prints_times(tmp_path, media, tiny_clip):
    from typer.testing import CliRunner

    from glimpse.cli import app

    runner = CliRunner()
    base = ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip)]
    indexed = runner.invoke(app, [*base, "index", str(media), "--frame-interval", "1:30", "--max-frames", "40"])
    assert indexed.exit_code == 0, indexed.output
    assert "Videos" in indexed.output and "2 sampled" in indexed.output
    query = str(query_image(tmp_path, 3))
    result = runner.invoke(app, [*base, "search", "--image", query, "--type", "video", "--per-video", "2"])
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.split()[1].endswith("scenes.mp4") and " @ 0:1" in first  # scene 3 spans 9.5-11.5 s
    as_json = json.loads(runner.invoke(app, [*base, "search", "--image", query, "--type", "video", "--json"]).stdout)
    assert {h["kind"] for h in as_json} == {"video"} and all(h["frames"] and "time" in h for h in as_json)
    bad = runner.invoke(app, [*base, "index", str(media), "--frame-interval", "soon"])
    assert bad.exit_code != 0 and "MIN:MAX" in bad.output
    wrong = runner.invoke(app, [*base, "search", "x", "--type", "film"])
    assert wrong.exit_code != 0 and "unknown type" in wrong.output


def test_server_serves_video_hits_frames_and_ranges(tmp_path, media, tiny_clip):
    pytest.importorskip("fastapi")
    import glimpse
    from glimpse.server.app import create_app
    from glimpse.settings import LibrarySettings
    from server_harness import call, get_json, serve

    with glimpse.open_library(tmp_path / "lib", model=str(tiny_clip)) as lib:
        lib.index([media], video_rules=RULES)
        video = lib.catalog.file_by_path(str(media / "scenes.mp4"))
    served = serve(create_app(LibrarySettings(tmp_path / "lib", str(tiny_clip))))
    try:
        page = get_json(served, "/api/search?q=a+photo&type=video&per_video=2")
        assert page["results"] and {r["kind"] for r in page["results"]} == {"video"}
        hit = next(r for r in page["results"] if r["id"] == video.id)
        assert hit["time"] == hit["frames"][0]["time"] and len(hit["frames"]) <= 2
        thumb = call(served, "GET", hit["thumbnail"])
        assert thumb.status == 200 and thumb.headers["content-type"] == "image/jpeg"
        by_frame = call(served, "GET", f"/api/images/{hit['frames'][0]['id']}/thumbnail")
        assert by_frame.status == 200 and by_frame.body == thumb.body  # the same frame, one cached thumbnail
        info = get_json(served, f"/api/images/{video.id}")
        assert info["kind"] == "video" and info["meta"]["duration"] == pytest.approx(15.0, abs=0.1)
        assert [f["time"] for f in info["frames"]] == sorted(f["time"] for f in info["frames"])
        part = call(served, "GET", info["file"], headers={"range": "bytes=0-99"})  # what a <video> asks for
        assert part.status == 206 and part.headers["content-type"] == "video/mp4" and len(part.body) == 100
        similar = get_json(served, f"/api/similar/{hit['frames'][0]['id']}")["results"]
        assert similar[0]["id"] == video.id
        photos = get_json(served, "/api/search?q=a+photo&type=photo")["results"]
        assert photos and {r["kind"] for r in photos} == {"photo"}
    finally:
        served.stop()


def test_the_page_plays_a_video_hit_from_its_frame(tmp_path, media, tiny_clip):
    pytest.importorskip("fastapi")
    import glimpse
    from glimpse.server.app import create_app
    from glimpse.settings import LibrarySettings
    from server_harness import browser_page, serve

    with glimpse.open_library(tmp_path / "lib", model=str(tiny_clip)) as lib:
        lib.index([media], video_rules=RULES)
    served = serve(create_app(LibrarySettings(tmp_path / "lib", str(tiny_clip))))
    try:
        with browser_page(served.url + "/") as (page, errors):
            page.select_option("#type", "video")
            page.fill("#q", "a photo")
            page.wait_for_function("document.querySelectorAll('#results .hit').length === 2")
            assert page.locator("#results .hit .video-time").count() == 2
            card = page.locator("#results .hit", has_text="scenes.mp4")
            shown = card.locator(".video-time").inner_text()  # "▶ 0:11.5"
            card.click()
            page.wait_for_selector("#viewer[open]")
            assert page.locator("#viewer-video").is_visible() and not page.locator("#viewer-image").is_visible()
            assert page.locator("#viewer-frames li").count() >= len(SCENES)
            assert page.inner_text("#viewer-duration") == "0:15"
            src = page.get_attribute("#viewer-video", "src")
            assert src.startswith("/api/images/") and "#t=" in src
            start = float(src.split("#t=")[1])
            minutes, seconds = shown.removeprefix("▶ ").split(":")
            assert int(minutes) * 60 + float(seconds) == pytest.approx(start)  # plays from the card's frame
            page.wait_for_function("document.querySelector('#viewer-video').readyState >= 1")
            assert float(page.eval_on_selector("#viewer-video", "v => v.currentTime")) == pytest.approx(
                start, abs=0.6)
            assert not errors, errors
    finally:
        served.stop()


def test_kill_9_while_indexing_videos_loses_nothing(tmp_path, tiny_clip):
    import random
    import subprocess
    import sys

    from conftest import count_rows, kill_at_rows
    from glimpse.catalog import Catalog
    from glimpse.vectors.faiss import FaissIndex

    pics = tmp_path / "pics"
    pics.mkdir()
    make_photos(pics, 10)
    for n in range(10):
        write_video(pics / f"clip{n:02d}.mp4", [1.5, 1.5, 1.5], size=(64, 48), gop=12, first_scene=n % 6)
    library = tmp_path / "lib"
    cmd = [sys.executable, "-m", "glimpse", "--library", str(library), "--model", str(tiny_clip), "index", str(pics),
           "--batch-size", "2", "--workers", "2", "--frame-interval", "1:30"]
    rng = random.Random(7)
    kills = 0
    for _ in range(5):
        target = count_rows(library / "catalog.sqlite3", "frames") + rng.randint(1, 6)
        kills += kill_at_rows(cmd, library / "catalog.sqlite3", "frames", target, timeout=120)
    assert kills >= 3
    final = subprocess.run(cmd, capture_output=True, timeout=300)
    assert final.returncode == 0, final.stderr.decode()
    # The same folder indexed in one go is the reference.
    reference = subprocess.run([*cmd[:4], str(tmp_path / "reference"), *cmd[5:]], capture_output=True, timeout=300)
    assert reference.returncode == 0, reference.stderr.decode()
    killed, clean = Catalog(library / "catalog.sqlite3"), Catalog(tmp_path / "reference" / "catalog.sqlite3")
    try:
        assert killed.integrity_check() == ["ok"]
        (model,) = killed.models()
        key = model["key"]
        for path, rec in clean.files_under(str(pics.resolve())).items():
            mine = killed.file_by_path(path)
            assert mine is not None and mine.state == rec.state == "ok"
            assert [t for _, t in killed.frames_of(mine.id, key)] == [t for _, t in clean.frames_of(rec.id, key)]
        emb_ids, _ = killed.embeddings(key)
        photos = {r.id for r in killed.indexed_files(videos=False)}
        assert sorted(emb_ids.tolist()) == sorted(photos | killed.frame_ids())  # no orphan frame, no lost vector
        index = FaissIndex.load(library / "index", key, model["dim"])
        assert sorted(index.ids().tolist()) == sorted(emb_ids.tolist())
    finally:
        killed.close()
        clean.close()


def test_clip_tags_of_a_video_are_its_frames_best(tmp_path, media, open_lib, small_vocab):
    from glimpse.tagging.clip_tagger import ClipTagger
    from glimpse.tagging.library_tags import tag_library
    from glimpse.zeroshot import text_cache_for

    lib = open_lib()
    lib.index([media], video_rules=RULES)
    report = tag_library(lib, threshold=0.5)
    assert report.tagged == 5 and report.failed == 0  # 3 photos + 2 videos, no video decoded as a photo
    video = lib.catalog.file_by_path(str(media / "scenes.mp4"))
    tags = dict(lib.catalog.tags_of([video.id])[video.id])
    assert tags
    tagger = ClipTagger(lib.encoder, cache=text_cache_for(lib.directory, lib.spec.key))
    frame_ids = [i for i, _ in lib.catalog.frames_of(video.id, lib.spec.key)]
    per_frame = tagger.score_vectors(lib.catalog.embeddings(lib.spec.key, frame_ids)[1])
    for name, score in tags.items():  # each tag scored by the frame that shows it best
        assert score == pytest.approx(float(per_frame[:, tagger.vocab.names.index(name)].max()), abs=1e-5)
    name = next(iter(tags))
    hits = lib.search_vector(lib.query_vector("a photo"), k=10, tags=[name], kind="video")
    assert video.id in {h.id for h in hits}
    assert tag_library(lib, threshold=0.5).tagged == 0  # nothing new: nothing re-tagged


def test_duplicate_videos_are_found_exactly_and_photo_levels_leave_videos_out(tmp_path, media, open_lib):
    from glimpse.dedup import find_duplicates

    shutil.copy(media / "scenes.mp4", media / "scenes copy.mp4")
    lib = open_lib()
    lib.index([media], video_rules=RULES)
    exact = find_duplicates(lib, "exact").to_dict()
    groups = [sorted([group["keep"]["path"], *(d["path"] for d in group["duplicates"])]) for group in exact["groups"]]
    assert groups == [[str(media / "scenes copy.mp4"), str(media / "scenes.mp4")]]
    for level in ("perceptual", "semantic"):
        report = find_duplicates(lib, level).to_dict()
        assert not report.get("failed"), (level, report.get("failed"))  # no video "failed to decode"
        paths = [p for g in report["groups"] for p in (g["keep"]["path"], *(d["path"] for d in g["duplicates"]))]
        assert not any(p.endswith(".mp4") for p in paths) and report["images"] == 3


def test_a_long_scan_says_how_far_it_got(tmp_path, media, open_lib, monkeypatch):
    import glimpse.video_items as video_items

    monkeypatch.setattr(video_items, "NOTE_AFTER", 0.0)  # every video counts as long here
    monkeypatch.setattr(video_items, "NOTE_EVERY", 0.0)
    notes: list[str | None] = []

    class Recorder:
        def start(self, total: int) -> None: ...
        def advance(self, n: int = 1) -> None: ...
        def finish(self) -> None: ...
        def note(self, text: str | None) -> None:
            notes.append(text)

    open_lib().index([media], video_rules=RULES, progress=Recorder())
    shares = [int(n.removeprefix("sampling scenes.mp4: ").rstrip("%")) for n in notes
              if n and n.startswith("sampling scenes.mp4: ")]
    assert shares == sorted(shares) and shares[-1] >= 80  # up to its last key frame, 14 s of 15
    assert notes[-1] is None  # cleared once the video is done


def test_without_pyav_videos_are_skipped_once_with_the_fix_and_retried_after_it(tmp_path, media, open_lib,
                                                                                 monkeypatch):
    import glimpse.pipeline as pipeline
    import glimpse.video_items as video_items

    monkeypatch.setattr(video_items, "video_support", lambda: False)
    monkeypatch.setattr(pipeline, "video_support", lambda: False)
    lib = open_lib()
    report = lib.index([media], video_rules=RULES)
    assert report.missing_support == {video_items.VIDEO_SUPPORT_HINT: 2} and report.failed == 0
    assert report.added == 3 and report.skipped == 2
    monkeypatch.undo()  # "pip install 'glimpse[video]'"
    again = lib.index([media], video_rules=RULES)
    assert again.videos == 2 and again.missing_support == {}


def test_few_videos_wait_in_memory_however_many_the_folder_holds(tmp_path, open_lib, monkeypatch):
    import threading

    import glimpse.pipeline as pipeline
    from glimpse.catalog import Catalog

    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(16):
        write_video(folder / f"v{n}.mp4", [1.0 + n / 20, 1.0], size=(64, 48), gop=12, first_scene=n % 6)  # unique
    (folder / "notes.ts").write_text("export const x: number = 1;\\n")  # TypeScript, not a transport stream
    lock, counts, peak = threading.Lock(), {"sampled": 0, "written": 0}, [0]
    sample, apply = pipeline.prepare_video, Catalog.apply

    def counting_sample(*args, **kwargs):
        result = sample(*args, **kwargs)
        with lock:
            counts["sampled"] += 1
            peak[0] = max(peak[0], counts["sampled"] - counts["written"])
        return result

    def counting_apply(self, updates, model_key):
        with lock:
            counts["written"] += sum(u.frames is not None or u.frames_from is not None for u in updates)
        return apply(self, updates, model_key)

    monkeypatch.setattr(pipeline, "prepare_video", counting_sample)
    monkeypatch.setattr(Catalog, "apply", counting_apply)
    report = open_lib().index([folder], batch_size=2, workers=2, video_rules=RULES)
    assert report.videos == 16 and report.skipped == 1 and not report.errors
    # The workers' window, the one in hand, one batch waiting — not a photo-sized window (16 here) of videos.
    assert peak[0] <= pipeline.VIDEO_WINDOW_PER_WORKER * 2 + 2


def test_index_ocr_reads_photos_and_leaves_unchanged_videos_alone(tmp_path, media, open_lib):
    pytest.importorskip("glimpse.ocr.engine")
    from glimpse.errors import FeatureUnavailableError

    lib = open_lib()
    try:
        first = lib.index([media], video_rules=RULES, ocr=True)
    except (FeatureUnavailableError, ImportError) as exc:
        pytest.skip(f"the OCR engine is not available here: {exc}")
    assert first.videos == 2 and first.ocr_read == 3  # the photos' text; videos are not read
    again = lib.index([media], video_rules=RULES, ocr=True)
    assert again.unchanged == 5 and again.ocr_read == 0 and again.videos == 0  # nothing re-read or re-hashed
