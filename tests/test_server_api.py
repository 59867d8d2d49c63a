"""The HTTP API against a real server (uvicorn on 127.0.0.1) over a tiny random CLIP and a small library."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import threading
from urllib.parse import quote

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from conftest import make_photos
from server_harness import call, get_json, multipart, post_json, serve


def search(server, q, **params):
    query = "&".join(f"{k}={quote(str(v))}" for k, v in params.items())
    return get_json(server, f"/api/search?q={quote(q)}" + (f"&{query}" if query else ""))


def test_healthz_and_openapi_document_every_route(server):
    assert get_json(server, "/healthz") == {"ok": True}
    paths = set(get_json(server, "/openapi.json")["paths"])
    assert {"/api/search", "/api/search/image", "/api/similar/{image_id}", "/api/images/{image_id}",
            "/api/images/{image_id}/thumbnail", "/api/images/{image_id}/file", "/api/tags", "/api/classify",
            "/api/index", "/api/jobs/{job_id}", "/api/status", "/healthz"} <= paths


def test_text_search_matches_the_library_ranking(server, fx, tiny_clip):
    import glimpse

    answer = search(server, "a red car +sunset", k=5)
    assert len(answer["results"]) == 5 and answer["offset"] == 0 and answer["more"] is True
    scores = [h["score"] for h in answer["results"]]
    assert scores == sorted(scores, reverse=True)
    with glimpse.open_library(fx.library, model=str(tiny_clip)) as lib:
        expected = [h for h in lib.search("a red car +sunset", k=8) if h.id != fx.escape_id][:5]
    assert [h["id"] for h in answer["results"]] == [h.id for h in expected]
    assert [h["score"] for h in answer["results"]] == pytest.approx([h.score for h in expected], abs=1e-5)
    first = answer["results"][0]
    assert first["path"] == next(str(p) for n, p in fx.photos.items() if fx.ids[n] == first["id"])
    assert first["thumbnail"] == f"/api/images/{first['id']}/thumbnail"


def test_pages_concatenate_to_one_ranking(server):
    whole = search(server, "beach", k=12)["results"]
    first, second = search(server, "beach", k=5), search(server, "beach", k=5, offset=5)
    last = search(server, "beach", k=5, offset=10)
    assert [h["id"] for h in first["results"] + second["results"] + last["results"]] == [h["id"] for h in whole]
    assert first["more"] and second["more"] and not last["more"]
    assert len(last["results"]) == 2  # 12 servable images: the symlink out of the root is never listed


def test_query_text_naming_a_server_file_is_text_not_a_file(server, fx):
    # On the command line a term naming an image file searches by that image; over HTTP it must not.
    photo = fx.photos["img_000.jpg"]
    hits = search(server, str(photo), k=1)["results"]
    assert hits[0]["score"] < 0.99


def test_filters_folder_and_min_score(server, fx):
    folder = str(fx.root / "b")
    hits = search(server, "dog", k=50, folder=folder)["results"]
    assert sorted(h["name"] for h in hits) == [f"img_{i:03d}.jpg" for i in range(6, 12)]
    everything = search(server, "dog", k=12)["results"]
    cut = everything[3]["score"]
    kept = search(server, "dog", k=12, min_score=cut)["results"]
    assert [h["id"] for h in kept] == [h["id"] for h in everything[:4]]
    folders = get_json(server, "/api/folders")
    assert {"folder": folder, "count": 6} in folders


def test_search_by_uploaded_image_and_similar(server, fx):
    name = "img_007.jpg"
    body, headers = multipart("file", "query.jpg", fx.photos[name].read_bytes(), "image/jpeg")
    reply = call(server, "POST", "/api/search/image?k=3", body=body, headers=headers)
    assert reply.status == 200, reply.body
    hits = reply.json()["results"]
    assert hits[0]["id"] == fx.ids[name] and hits[0]["score"] > 0.999
    similar = get_json(server, f"/api/similar/{fx.ids[name]}?k=3")["results"]
    assert similar[0]["id"] == fx.ids[name] and similar[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert [h["id"] for h in similar] == [h["id"] for h in hits]


def test_image_metadata_thumbnail_and_file(server, fx):
    name = "img_003.jpg"
    file_id = fx.ids[name]
    info = get_json(server, f"/api/images/{file_id}")
    assert info["path"] == str(fx.photos[name]) and (info["width"], info["height"]) == (96, 72)
    original = call(server, "GET", f"/api/images/{file_id}/file")
    assert original.status == 200 and original.body == fx.photos[name].read_bytes()
    assert original.headers["content-type"] == "image/jpeg"
    thumb = call(server, "GET", f"/api/images/{file_id}/thumbnail")
    assert thumb.status == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.body)).size == (96, 72)  # never enlarged beyond the original
    cached = list((fx.library / "thumbs").glob(f"{file_id}-*.jpg"))
    assert len(cached) == 1 and cached[0].read_bytes() == thumb.body
    stamp = cached[0].stat().st_mtime_ns
    assert call(server, "GET", f"/api/images/{file_id}/thumbnail").body == thumb.body
    assert cached[0].stat().st_mtime_ns == stamp  # served from the cache, not rewritten


def test_errors_are_json_with_matching_status(server):
    cases = [
        ("GET", "/api/search?q=", 422),
        ("GET", "/api/search?q=cat&k=0", 422),
        ("GET", "/api/search?q=-cat", 400),  # only negative terms
        ("GET", "/api/images/424242", 404),
        ("GET", "/api/similar/424242", 404),
        ("GET", "/api/jobs/nope", 404),
        ("GET", "/api/nothing-here", 404),
    ]
    for method, path, status in cases:
        reply = call(server, method, path)
        assert reply.status == status, (path, reply.status, reply.body)
        assert reply.headers["content-type"].startswith("application/json")
        assert isinstance(reply.json()["error"], str) and reply.json()["error"]
    body, headers = multipart("file", "notes.jpg", b"just some text, not an image")
    reply = call(server, "POST", "/api/search/image", body=body, headers=headers)
    assert reply.status == 415 and "not an image" in reply.json()["error"]


def test_status_and_tags(server, fx):
    status = get_json(server, "/api/status")
    assert status["images"] == 13  # 12 photos + the symlinked one (indexed, but never served)
    assert status["roots"] == [str(fx.root)]
    assert set(status["features"]) == {"tags", "classify"}
    tags = get_json(server, "/api/tags")
    assert tags["available"] is status["features"]["tags"]
    if not tags["available"]:
        assert tags["tags"] == []


def test_classify_without_zeroshot_is_501(server, fx, monkeypatch):
    # A glimpse without its zero-shot part: a None entry in sys.modules makes find_spec report it absent (the
    # server runs in this process, in a thread).
    monkeypatch.setitem(sys.modules, "glimpse.zeroshot", None)
    assert get_json(server, "/api/status")["features"]["classify"] is False
    reply = post_json(server, "/api/classify", {"ids": [fx.ids["img_001.jpg"]], "labels": ["cat", "dog"]})
    assert reply.status == 501 and "zero-shot" in reply.json()["error"]


@pytest.mark.skipif(importlib.util.find_spec("glimpse.zeroshot") is None, reason="zero-shot is not installed")
def test_classify_uses_stored_vectors(server, fx):
    ids = [fx.ids["img_001.jpg"], fx.ids["img_002.jpg"]]
    reply = post_json(server, "/api/classify", {"ids": ids, "labels": ["cat", "dog", "car"], "k": 3})
    assert reply.status == 200, reply.body
    results = reply.json()["results"]
    assert [r["id"] for r in results] == ids
    for r in results:
        assert sorted(x["label"] for x in r["labels"]) == ["car", "cat", "dog"]
        assert sum(x["score"] for x in r["labels"]) == pytest.approx(1.0, abs=1e-3)


def test_second_index_job_gets_409(server):
    service = server.app.state.service
    release = threading.Event()
    blocker = service.jobs.start(["/nowhere"], lambda job: release.wait(30) and {})
    try:
        reply = post_json(server, "/api/index", {})
        assert reply.status == 409 and blocker.id in reply.json()["error"]
    finally:
        release.set()
    assert service.jobs.wait_idle(timeout=30)
    assert get_json(server, f"/api/jobs/{blocker.id}")["state"] == "done"


def test_index_refuses_a_root_it_was_not_given(server, tmp_path):
    reply = post_json(server, "/api/index", {"roots": [str(tmp_path)]})
    assert reply.status == 400 and "not a root of this server" in reply.json()["error"]


def test_searches_keep_working_while_indexing(tmp_path, tiny_clip):
    """A job indexes 40 new photos while 3 clients search; every search answers, new images appear."""
    import glimpse
    from glimpse.server.app import create_app

    root = tmp_path / "root"
    make_photos(root / "old", 6)
    with glimpse.open_library(tmp_path / "lib", model=str(tiny_clip)) as lib:
        lib.index([root])
    new = make_photos(root / "new", 40, start=100)
    served = serve(create_app(tmp_path / "lib", str(tiny_clip), index_batch_size=4))
    try:
        started = post_json(served, "/api/index", {})
        assert started.status == 202, started.body
        job_id = started.json()["id"]
        statuses: list[int] = []
        done = threading.Event()

        def client() -> None:
            while not done.is_set():
                statuses.append(call(served, "GET", "/api/search?q=tree&k=5").status)

        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        events = call(served, "GET", f"/api/jobs/{job_id}/events")  # streams until the job ends
        done.set()
        for t in threads:
            t.join()
        assert events.status == 200 and events.headers["content-type"].startswith("text/event-stream")
        snapshots = [json.loads(line[6:]) for line in events.body.decode().splitlines() if line.startswith("data: ")]
        final = snapshots[-1]
        assert final["state"] == "done" and final["report"]["added"] == 40
        assert final["total"] == final["done"] == 40
        # With the tiny model the job may finish before the stream connects; any live snapshot seen has
        # its total unknown (still scanning) or 40, and progress never runs backwards.
        running = [s for s in snapshots if s["state"] == "running"]
        assert all(s["total"] in (None, 40) for s in running)
        progress = [s["done"] for s in running if s["total"] == 40]
        assert progress == sorted(progress) and all(0 <= d <= 40 for d in progress)
        assert statuses and set(statuses) == {200}
        job = get_json(served, f"/api/jobs/{job_id}")
        assert job["done"] == 40 and job["error"] is None
        body, headers = multipart("file", "n.jpg", new[17].read_bytes())
        hits = call(served, "POST", "/api/search/image?k=1", body=body, headers=headers).json()["results"]
        assert hits[0]["path"] == str(new[17]) and hits[0]["score"] > 0.999
        assert get_json(served, "/api/status")["images"] == 46
    finally:
        served.stop()


def test_tag_labels_follow_the_language(tmp_path):
    # The page's EN/中文 toggle: tags are stored by English name (the filter key) and shown in the asked language.
    from glimpse.catalog import STATE_OK, Catalog, FileUpdate
    from glimpse.server.extensions import Tags

    catalog = Catalog(tmp_path / "catalog.sqlite3")
    (file_id,) = catalog.apply([FileUpdate("/r/a.jpg", 1, 1, STATE_OK, hash="h")], "m")
    catalog.put_tags([(file_id, "h", [("dog", 0.9), ("beach", 0.7), ("not-in-vocab", 0.6)])], source="clip:m")
    tags = Tags(catalog)
    zh = {t["tag"]: t["label"] for t in tags.for_ids([file_id], "zh")[file_id]}
    assert zh == {"dog": "狗", "beach": "海滩", "not-in-vocab": "not-in-vocab"}
    en = {t["tag"]: t["label"] for t in tags.for_ids([file_id], "en")[file_id]}
    assert en == {"dog": "dog", "beach": "beach", "not-in-vocab": "not-in-vocab"}
    assert {f["label"] for f in tags.facets("zh", 10)} == {"狗", "海滩", "not-in-vocab"}
    catalog.close()


def test_api_docs_are_served_without_a_cdn(server):
    # There is no internet: the interactive docs must load Swagger UI from this server, not from a CDN.
    page = call(server, "GET", "/docs")
    assert page.status == 200
    html = page.body.decode()
    assert "/docs-assets/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    script = call(server, "GET", "/docs-assets/swagger-ui-bundle.js")
    assert script.status == 200 and len(script.body) > 100_000
