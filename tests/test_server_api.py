"""The HTTP API against a real server (uvicorn on 127.0.0.1) over a tiny random CLIP and a small library."""

from __future__ import annotations

import io
import json
import threading
import time
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from conftest import make_photos
from glimpse.errors import UserInputError
from server_harness import call, get_json, multipart, post_json, serve


def search(server, q, **params):
    query = "&".join(f"{k}={quote(str(v))}" for k, v in params.items())
    return get_json(server, f"/api/search?q={quote(q)}" + (f"&{query}" if query else ""))


def test_healthz_and_openapi_document_every_route(server):
    assert get_json(server, "/healthz") == {"ok": True}
    paths = set(get_json(server, "/openapi.json")["paths"])
    assert {"/api/search", "/api/search/image", "/api/similar/{image_id}", "/api/images/{image_id}",
            "/api/images/{image_id}/thumbnail", "/api/images/{image_id}/file", "/api/tags", "/api/classify",
            "/api/index", "/api/jobs/{job_id}", "/api/status", "/api/recent", "/healthz"} <= paths


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


def test_recent_images_page_newest_first_and_servable_only(server, fx, tiny_clip):
    # The page's view before any search: the most recently indexed images, in pages, never the symlink.
    import glimpse

    first, second, last = (get_json(server, f"/api/recent?k=5&offset={o}") for o in (0, 5, 10))
    assert [p["offset"] for p in (first, second, last)] == [0, 5, 10]
    assert first["more"] and second["more"] and not last["more"]
    listed = first["results"] + second["results"] + last["results"]
    assert len(listed) == 12 and fx.escape_id not in {h["id"] for h in listed}
    with glimpse.open_library(fx.library, model=str(tiny_clip)) as lib:
        expected = [h.id for h in lib.recent(50) if h.id != fx.escape_id]
    assert [h["id"] for h in listed] == expected
    assert all(h["score"] == 0 and h["thumbnail"] == f"/api/images/{h['id']}/thumbnail" for h in listed)
    assert get_json(server, "/api/recent?k=50")["results"] == listed
    assert call(server, "GET", "/api/recent?k=0").status == 422


def test_favicon_is_served(server):
    icon = call(server, "GET", "/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.body.startswith(b"<svg") and b"</svg>" in icon.body
    linked = call(server, "GET", "/static/favicon.svg")
    assert linked.status == 200 and linked.body == icon.body
    assert b'rel="icon" href="/static/favicon.svg"' in call(server, "GET", "/").body


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


def test_classify_uses_stored_vectors(server, fx):
    ids = [fx.ids["img_001.jpg"], fx.ids["img_002.jpg"]]
    reply = post_json(server, "/api/classify", {"ids": ids, "labels": ["cat", "dog", "car"], "k": 3})
    assert reply.status == 200, reply.body
    results = reply.json()["results"]
    assert [r["id"] for r in results] == ids
    for r in results:
        assert sorted(x["label"] for x in r["labels"]) == ["car", "cat", "dog"]
        assert sum(x["score"] for x in r["labels"]) == pytest.approx(1.0, abs=1e-3)


def test_classify_labels_are_bounded(server, fx):
    from glimpse.server.service import MAX_CLASSIFY_LABELS, MAX_TEXT_CHARS

    assert MAX_CLASSIFY_LABELS == 100
    ids = [fx.ids["img_001.jpg"]]
    labels = [f"label {i}" for i in range(MAX_CLASSIFY_LABELS + 1)]
    reply = post_json(server, "/api/classify", {"ids": ids, "labels": labels})
    assert reply.status == 400, reply.body
    assert reply.json()["error"] == ("too many labels: 101; at most 100 per request, "
                                     "so split them across several requests")
    reply = post_json(server, "/api/classify", {"ids": ids, "labels": ["cat", "x" * (MAX_TEXT_CHARS + 1)]})
    assert reply.status == 400 and f"at most {MAX_TEXT_CHARS}" in reply.json()["error"]
    reply = post_json(server, "/api/classify", {"ids": ids, "labels": labels[:MAX_CLASSIFY_LABELS], "k": 100})
    assert reply.status == 200 and len(reply.json()["results"][0]["labels"]) == MAX_CLASSIFY_LABELS
    schema = get_json(server, "/openapi.json")["components"]["schemas"]["ClassifyIn"]["properties"]["labels"]
    assert schema["maxItems"] == MAX_CLASSIFY_LABELS and "at most 100" in schema["description"]


def _wait_until(condition, what: str) -> None:
    """Poll ``condition`` (a hang guard, not a timing check: it fails only if the state never comes)."""
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.005)


def test_a_search_is_answered_while_a_long_classify_runs(server, fx, monkeypatch):
    """Classify's 800 prompts are encoded in turns: a search that arrives meanwhile takes the next turn."""
    service = server.app.state.service
    encoder = service.library.encoder
    real_encode = encoder.encode_texts
    labels = [f"label {i}" for i in range(100)]  # x 8 templates: 800 prompts
    turns: list[str] = []  # who reached the encoder, in order
    answered: list[str] = []  # which request got its reply first
    classify_began, search_answered = threading.Event(), threading.Event()

    def spy(texts):
        who = "classify" if any("label " in t for t in texts) else "search"
        turns.append(who)
        if who == "classify" and turns.count("classify") == 1:
            classify_began.set()
            # Hold classify's first turn until the search is queued behind it (the search thread is started
            # only once this turn began, so it cannot have slipped in before).
            _wait_until(lambda: service.text_encoder.waiting >= 1, "the search queued for the text encoder")
        elif who == "classify" and "search" in turns:
            search_answered.wait(60)  # the search needs no more text turns: let it finish first, for sure
        return real_encode(texts)

    monkeypatch.setattr(encoder, "encode_texts", spy)
    replies = {}

    def run(name, request):
        replies[name] = request()
        answered.append(name)
        if name == "search":
            search_answered.set()

    classify = threading.Thread(target=run, args=("classify", lambda: post_json(
        server, "/api/classify", {"ids": [fx.ids["img_001.jpg"]], "labels": labels, "k": 3})))
    classify.start()
    assert classify_began.wait(60)
    searching = threading.Thread(target=run, args=("search", lambda: call(server, "GET", "/api/search?q=a+red+car")))
    searching.start()
    searching.join(120)
    classify.join(120)
    assert replies["search"].status == 200 and len(replies["search"].json()["results"]) == 12
    assert replies["classify"].status == 200, replies["classify"].body
    assert len(replies["classify"].json()["results"][0]["labels"]) == 3
    assert turns[:2] == ["classify", "search"] and set(turns[2:]) == {"classify"}  # in between classify's turns
    assert len(turns) == 1 + 800 // 32
    assert answered == ["search", "classify"]


def test_the_indexing_job_encodes_texts_in_turns_too(server, monkeypatch):
    # IVF tuning encodes text probes inside the job's thread; they must not race a search's tokenizer.
    from glimpse.library import Library

    service = server.app.state.service
    seen = []

    def index_spy(lib, roots, **kwargs):
        seen.append(lib.encoder)
        vectors = lib.encoder.encode_texts(["a probe prompt"])
        return SimpleNamespace(to_dict=lambda: {"probe_shape": list(vectors.shape)})

    monkeypatch.setattr(Library, "index", index_spy)
    job = service.start_index(None)
    assert service.jobs.wait_idle(timeout=60)
    assert job.state == "done", job.error
    assert seen == [service.text_encoder] and seen[0].inner is service.library.encoder
    assert job.report == {"probe_shape": [1, service.library.encoder.dim]}


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
    from glimpse.settings import LibrarySettings

    root = tmp_path / "root"
    make_photos(root / "old", 6)
    with glimpse.open_library(tmp_path / "lib", model=str(tiny_clip)) as lib:
        lib.index([root])
    new = make_photos(root / "new", 40, start=100)
    served = serve(create_app(LibrarySettings(tmp_path / "lib", str(tiny_clip)), index_batch_size=4))
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
    from glimpse.server.tags import Tags

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


def test_the_server_serves_the_store_it_is_given(tmp_path, tiny_clip, monkeypatch):
    """``glimpse --store x.db serve``: searches and the indexing job use the milvus-lite store, never FAISS."""
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    from glimpse.library import Library
    from glimpse.server.app import create_app
    from glimpse.settings import LibrarySettings
    from glimpse.vectors.milvus import MilvusIndex

    root = tmp_path / "root"
    old = make_photos(root / "old", 6)
    settings = LibrarySettings(tmp_path / "lib", str(tiny_clip), store=str(tmp_path / "x.db"))
    with Library.from_settings(settings) as lib:
        lib.index([root])
        expected = lib.search("a red car", k=3)
    searched: list[int] = []
    real_search = MilvusIndex.search

    def spy(self, queries, k, **filters):
        searched.append(k)
        return real_search(self, queries, k, **filters)

    monkeypatch.setattr(MilvusIndex, "search", spy)
    served = serve(create_app(settings, index_batch_size=4))
    try:
        assert get_json(served, "/api/status")["index_kind"].startswith("milvus")
        hits = get_json(served, f"/api/search?q={quote('a red car')}&k=3")["results"]
        assert searched, "the search did not go through the Milvus store"
        assert [h["id"] for h in hits] == [h.id for h in expected]
        assert [h["score"] for h in hits] == pytest.approx([h.score for h in expected], abs=1e-5)
        # The indexing job opens the same store (it used to index into a FAISS index of its own).
        new = make_photos(root / "new", 4, start=50)
        started = post_json(served, "/api/index", {})
        assert started.status == 202, started.body
        assert served.app.state.service.jobs.wait_idle(timeout=60)
        job = get_json(served, f"/api/jobs/{started.json()['id']}")
        assert job["state"] == "done" and job["report"]["added"] == 4, job
        body, headers = multipart("file", "n.jpg", new[2].read_bytes())
        hits = call(served, "POST", "/api/search/image?k=1", body=body, headers=headers).json()["results"]
        assert hits[0]["path"] == str(new[2]) and hits[0]["score"] > 0.999
        assert not list((tmp_path / "lib").rglob("*.faiss"))  # no FAISS index was ever written
        assert get_json(served, f"/api/similar/{hits[0]['id']}?k=1")["results"][0]["path"] == str(new[2])
        assert str(old[0]) in {h["path"] for h in get_json(served, "/api/recent?k=50")["results"]}
    finally:
        served.stop()


def test_a_bad_store_is_refused_at_start(tmp_path, tiny_clip):
    from typer.testing import CliRunner

    from glimpse.cli import app
    from glimpse.server.app import create_app
    from glimpse.settings import LibrarySettings

    with pytest.raises(UserInputError, match=r"--store 'redis://x'.*milvus://HOST:PORT"):
        create_app(LibrarySettings(tmp_path / "lib", str(tiny_clip), store="redis://x"))
    result = CliRunner().invoke(app, ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip),
                                      "--store", "redis://x", "serve", "--port", "0"])
    assert result.exit_code == 1 and "milvus://HOST:PORT" in result.stderr
    assert not (tmp_path / "lib").exists()  # refused before anything was created
