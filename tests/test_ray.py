"""Distributed indexing on a real local Ray (2 CPUs) with the tiny CLIP: equal to the single-process path."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pq = pytest.importorskip("pyarrow.parquet")

import glimpse  # noqa: E402
from conftest import RecordingProgress, make_photos  # noqa: E402
from glimpse.distributed import (  # noqa: E402
    DistributedError,
    RayIndexJob,
    bulk_load,
    check_address,
    list_inputs,
)
from glimpse.errors import UserInputError  # noqa: E402
from tagging_helpers import use_small_vocabulary  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def make_corpus(tmp_path):
    """9 photos in a/ and b/, a text file and a broken JPEG; and a list file naming them all."""
    photos = tmp_path / "photos"
    make_photos(photos / "a", 5)
    make_photos(photos / "b", 4, start=5)
    (photos / "b" / "notes.txt").write_text("not an image\n")
    (photos / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)  # a JPEG header, no data
    listing = tmp_path / "listing.txt"
    lines = ["# the a folder, by relative path, then b by absolute path"]
    lines += [f"photos/a/{p.name}" for p in sorted((photos / "a").iterdir())]
    lines += [str(p) for p in sorted((photos / "b").iterdir())]
    listing.write_text("\n".join(lines) + "\n")
    return photos, listing


@pytest.fixture()
def corpus(tmp_path):
    return make_corpus(tmp_path)


@pytest.fixture(scope="module")
def tagged_job(local_ray, tiny_clip, tmp_path_factory):
    """One Ray run with tags over the corpus (small tag vocabulary, kept set for the module's tests)."""
    base = tmp_path_factory.mktemp("tagged")
    photos, _ = make_corpus(base)
    with pytest.MonkeyPatch.context() as mp:
        use_small_vocabulary(base, mp)
        job = RayIndexJob([str(photos)], str(tiny_clip), base / "job", shard_size=5, batch_size=3, tags=True)
        progress = RecordingProgress()
        report = job.run(encoders=1, workers=1, progress=progress)
        yield photos, base / "job", report, progress


def test_list_inputs_expands_folders_lists_and_urls(corpus, tmp_path):
    photos, listing = corpus
    from_folder = list_inputs([str(photos)])
    from_list = list_inputs([str(listing), "s3://bucket/x.jpg"])
    assert sorted(from_folder) == sorted(from_list[:-1]) and len(from_folder) == 11
    assert from_list[-1] == "s3://bucket/x.jpg"
    with pytest.raises(UserInputError, match="does not exist"):
        list_inputs([str(tmp_path / "missing")])


def test_ray_index_equals_single_process_and_resumes(local_ray, corpus, tmp_path, tiny_clip):
    photos, listing = corpus
    work = tmp_path / "job"
    job = RayIndexJob([str(listing)], str(tiny_clip), work, shard_size=4, batch_size=3)
    assert job.shard_count == 3
    report = job.run(encoders=1)
    assert (report.shards, report.shards_done_before, report.files) == (3, 0, 11)
    assert (report.encoded, report.failed, report.skipped) == (9, 1, 1)
    assert any(e["path"].endswith("broken.jpg") for e in report.errors)
    table = pq.read_table(work / "shard-00000.parquet")
    assert table.column_names == ["id", "path", "size", "mtime_ns", "hash", "width", "height", "format", "state",
                                  "error", "embedding", "tags", "tag_scores"]
    assert table.column("id").to_pylist() == [0, 1, 2, 3]
    assert table.column("tags").to_pylist() == [[]] * 4 and report.to_dict().get("tags") is None

    # a re-run finds every shard done; a lost shard is redone alone
    assert job.run().shards == 0
    (work / "shard-00001.done").unlink()
    again = RayIndexJob([str(listing)], str(tiny_clip), work, shard_size=4, batch_size=3).run(encoders=1)
    assert (again.shards, again.shards_done_before) == (1, 2)
    with pytest.raises(DistributedError, match="another job"):
        RayIndexJob([str(photos / "a")], str(tiny_clip), work, shard_size=4)

    with glimpse.open_library(tmp_path / "ray_lib", model=str(tiny_clip)) as distributed, \
            glimpse.open_library(tmp_path / "local_lib", model=str(tiny_clip)) as local:
        assert bulk_load(distributed, work) == 11
        local.index([photos])
        key = local.spec.key
        for lib in (distributed, local):
            counts = lib.catalog.counts()
            assert (counts["ok"], counts["error"], counts["skipped"]) == (9, 1, 1)
        ids_l, vec_l = local.catalog.embeddings(key)
        ids_d, vec_d = distributed.catalog.embeddings(key)
        by_path_l = {local.catalog.files_by_id([i])[i].path: v for i, v in zip(ids_l.tolist(), vec_l, strict=True)}
        by_path_d = {distributed.catalog.files_by_id([i])[i].path: v
                     for i, v in zip(ids_d.tolist(), vec_d, strict=True)}
        assert by_path_l.keys() == by_path_d.keys()
        for path, vector in by_path_l.items():
            np.testing.assert_allclose(by_path_d[path], vector, atol=1e-5)
        for query in ("a photo of a cat", "red"):
            assert [h.path for h in distributed.search(query, k=5)] == [h.path for h in local.search(query, k=5)]
        assert distributed.status().index_vectors == 9
        # the files are known with their size and mtime: a local re-index has nothing to encode
        assert distributed.index([photos]).encoded == 0


def test_bulk_load_refuses_shards_of_another_model(local_ray, corpus, tmp_path, tiny_clip, tiny_clip_b):
    photos, _ = corpus
    work = tmp_path / "job_b"
    RayIndexJob([str(photos / "a")], str(tiny_clip_b), work, shard_size=10).run(encoders=1)
    with glimpse.open_library(tmp_path / "lib", model=str(tiny_clip)) as lib, \
            pytest.raises(UserInputError, match="encoded with"):
        bulk_load(lib, work)


def test_ray_tags_equal_local_index_tags(tagged_job, tmp_path, tiny_clip):
    from glimpse.tagging.library_tags import tag_library

    photos, work, report, progress = tagged_job
    assert (report.encoded, report.tagged) == (9, 9) and report.tags > 0
    assert report.to_dict()["tags"] == {"source": report.tag_source, "tagged": 9, "tags": report.tags}
    assert (progress.total, progress.done, progress.finished) == (11, 11, True)
    shard = pq.read_table(work / "shard-00000.parquet").to_pylist()
    assert all(len(r["tags"]) == len(r["tag_scores"]) for r in shard)
    assert all(r["tags"] == [] for r in shard if r["state"] != "ok")

    with glimpse.open_library(tmp_path / "ray_lib", model=str(tiny_clip)) as distributed, \
            glimpse.open_library(tmp_path / "local_lib", model=str(tiny_clip)) as local:
        bulk_load(distributed, work)
        local.index([photos])
        local_report = tag_library(local)  # what `glimpse index --tags` runs after indexing
        assert local_report.source == report.tag_source and local_report.tagged == 9
        assert local_report.tags == report.tags

        def tags_by_path(lib):
            found = lib.catalog.tags_of(lib.catalog.files_with_vectors(lib.spec.key))
            return {lib.catalog.files_by_id([i])[i].path: tags for i, tags in found.items()}

        ray_tags, local_tags = tags_by_path(distributed), tags_by_path(local)
        assert ray_tags and ray_tags.keys() == local_tags.keys()
        for path, tags in local_tags.items():
            assert [t for t, _ in ray_tags[path]] == [t for t, _ in tags]
            np.testing.assert_allclose([s for _, s in ray_tags[path]], [s for _, s in tags], atol=1e-5)
        # stored under the local tagger's source at the files' hashes: a local `index --tags` has nothing to do
        assert distributed.catalog.files_to_tag(report.tag_source) == []
        assert distributed.catalog.tag_counts() == local.catalog.tag_counts()
        assert tag_library(distributed).tagged == 0


def test_milvus_bulk_load_carries_tags(tagged_job, tmp_path, tiny_clip):
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    from glimpse.catalog import CATALOG_FILENAME, Catalog
    from glimpse.vectors.milvus import MilvusIndex

    _, work, _, _ = tagged_job
    db = str(tmp_path / "tags.db")
    with glimpse.open_library(tmp_path / "lib", model=str(tiny_clip), store=db) as lib:
        assert bulk_load(lib, work) == 11
        key, dim, directory = lib.spec.key, lib.spec.dim, lib.directory
        tag, count = lib.catalog.tag_counts()[0]
        with_tag = lib.catalog.ids_with_tags([tag])
        assert {h.id for h in lib.search("a photo", k=11, tags=[tag])} == with_tag and len(with_tag) == count
    # the rows Milvus received at load time carry the tags: filter inside Milvus on a fresh connection
    catalog = Catalog(directory / CATALOG_FILENAME)
    index = MilvusIndex(db, catalog, key, dim)
    try:
        _, vectors = catalog.embeddings(key)
        found = index.search(vectors[:1], 11, tags=[tag])[0].ids.tolist()
        assert set(found) == with_tag
    finally:
        index.close()
        catalog.close()


def test_job_and_run_options_are_checked(local_ray, corpus, tmp_path, tiny_clip):
    photos, _ = corpus
    with pytest.raises(UserInputError, match="max_megapixels must be a positive number"):
        RayIndexJob([str(photos)], str(tiny_clip), tmp_path / "j0", max_megapixels=0)
    job = RayIndexJob([str(photos)], str(tiny_clip), tmp_path / "j1")
    for options, message in (({"encoders": 0}, "--encoders must be a positive"),
                             ({"workers": -1}, "--workers must be a positive"),
                             ({"encoders": 64}, "--encoders 64: the Ray cluster has")):
        with pytest.raises(UserInputError, match=message):
            job.run(**options)
    # the same inputs with another megapixel limit are another job
    with pytest.raises(DistributedError, match="another job"):
        RayIndexJob([str(photos)], str(tiny_clip), tmp_path / "j1", max_megapixels=5)
    assert RayIndexJob([str(photos)], str(tiny_clip), tmp_path / "j1", max_megapixels=5, restart=True).restarted


def test_a_failing_worker_is_one_clear_error(local_ray, corpus, tmp_path, tiny_clip):
    import shutil

    photos, _ = corpus
    model = shutil.copytree(tiny_clip, tmp_path / "model")
    job = RayIndexJob([str(photos / "a")], str(model), tmp_path / "job")
    shutil.rmtree(model)  # gone before the workers load it
    with pytest.raises(DistributedError, match=r"failed on a worker: model .* is neither a local model directory"):
        job.run(encoders=1)
    assert job.pending_shards() == [0]


def test_bad_addresses_fail_fast_and_clearly(tmp_path, tiny_clip):
    with pytest.raises(UserInputError, match="give auto"):
        check_address("not-an-address")
    with pytest.raises(DistributedError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:1 \("):
        check_address("127.0.0.1:1")
    # end to end in a fresh process (this one has joined the test's Ray): one line, exit code 1
    make_photos(tmp_path / "photos", 1)
    done = subprocess.run(
        [sys.executable, "-m", "glimpse", "--library", str(tmp_path / "lib"), "--model", str(tiny_clip), "index",
         str(tmp_path / "photos"), "--engine", "ray", "--address", "127.0.0.1:1"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "error: cannot reach the Ray cluster at 127.0.0.1:1" in done.stderr and "Traceback" not in done.stderr


def test_cli_index_engine_ray(local_ray, corpus, tmp_path, tiny_clip, small_vocab):
    from typer.testing import CliRunner

    from glimpse.cli import app

    _, listing = corpus
    base = ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip)]
    runner = CliRunner()

    def index(*options: str) -> dict:
        result = runner.invoke(app, [*base, "index", str(listing), "--engine", "ray", "--json", *options])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    report = index("--workers", "1", "--encoders", "1")
    assert (report["files"], report["encoded"], report["loaded"]) == (11, 9, 11) and "tags" not in report
    # the same command again resumes the same job: nothing left to encode
    again = index()
    assert (again["shards"], again["shards_done_before"]) == (0, 1)
    # asking for tags redoes the shards written without them; then tags filter searches and facets
    tagged = index("--tags")
    assert (tagged["shards"], tagged["shards_done_before"], tagged["tags"]["tagged"]) == (1, 0, 9)
    assert index("--tags")["shards"] == 0
    facets = json.loads(runner.invoke(app, [*base, "tags", "--json"]).stdout)
    assert facets and sum(f["count"] for f in facets) == tagged["tags"]["tags"]
    hits = json.loads(runner.invoke(app, [*base, "search", "a photo", "-k", "11", "--tag", facets[0]["tag"],
                                          "--json"]).stdout)
    assert len(hits) == facets[0]["count"] and all(facets[0]["tag"] in {t["tag"] for t in h["tags"]} for h in hits)
    # --max-megapixels reaches the decode tasks: the managed job restarts, every photo is refused
    small = index("--max-megapixels", "0.005")
    assert (small["shards_done_before"], small["encoded"], small["failed"]) == (0, 0, 10)
    assert sum("above the 0.005 MP limit" in e["reason"] for e in small["errors"]) == 9
    text = runner.invoke(app, [*base, "index", str(listing), "--engine", "ray", "--max-megapixels", "0.005"])
    assert text.exit_code == 0, text.output
    assert "Indexed on Ray 11 files: 0 shards written now, 1 already done" in text.stderr
    assert "Loaded 11 files into the library" in text.stderr and "failed" in text.stderr

    for bad, message in ((["--encoders", "0"], "--encoders"), (["--workers", "0"], "--workers")):
        result = runner.invoke(app, [*base, "index", str(listing), "--engine", "ray", *bad])
        assert result.exit_code == 2 and message in result.stderr
    bad = runner.invoke(app, [*base, "index", str(listing), "--engine", "spark"])
    assert bad.exit_code == 1 and "'local' (the default) or 'ray'" in bad.stderr


def test_index_on_ray_owns_the_job(local_ray, corpus, tmp_path, tiny_clip):
    """The Library-level call the CLI makes: a managed job directory under the library, resumed by a re-run."""
    from glimpse.distributed import JOBS_DIRNAME, index_on_ray, managed_work_dir

    _, listing = corpus
    seen = []
    with glimpse.open_library(tmp_path / "lib", model=str(tiny_clip)) as lib:
        report, loaded = index_on_ray(lib, [listing], encoders=1, workers=1, memory_budget=2**30,
                                      on_job=seen.append)
        assert (report.files, report.encoded, loaded) == (11, 9, 11)
        assert len(seen) == 1 and seen[0].work_dir == managed_work_dir(lib, [str(listing)])
        assert seen[0].work_dir.parent == lib.directory / JOBS_DIRNAME
        assert lib.status().index_vectors == 9 and lib.catalog.get_meta("default_model") == lib.model_name
        from glimpse.vectors.select import load_policy

        assert load_policy(lib.catalog, lib.spec.key).memory_budget == 2**30
        again, loaded_again = index_on_ray(lib, [listing], encoders=1)
        assert (again.shards, again.shards_done_before, loaded_again) == (0, 1, 11)
