"""Distributed indexing on a real local Ray (2 CPUs) with the tiny CLIP: equal to the single-process path."""

from __future__ import annotations

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pq = pytest.importorskip("pyarrow.parquet")

import glimpse  # noqa: E402
from conftest import make_photos  # noqa: E402
from glimpse.distributed import DistributedError, RayIndexJob, bulk_load, list_inputs  # noqa: E402
from glimpse.errors import UserInputError  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture()
def corpus(tmp_path):
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
                                  "error", "embedding", "tags"]
    assert table.column("id").to_pylist() == [0, 1, 2, 3]

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


def test_cli_index_engine_ray(local_ray, corpus, tmp_path, tiny_clip):
    import json

    from typer.testing import CliRunner

    from glimpse.cli import app

    _, listing = corpus
    base = ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip)]
    runner = CliRunner()
    result = runner.invoke(app, [*base, "index", str(listing), "--engine", "ray", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["files"], report["encoded"], report["loaded"]) == (11, 9, 11)
    # the same command again resumes the same job: nothing left to encode
    again = json.loads(runner.invoke(app, [*base, "index", str(listing), "--engine", "ray", "--json"]).stdout)
    assert (again["shards"], again["shards_done_before"]) == (0, 1)
    hits = json.loads(runner.invoke(app, [*base, "search", "a photo", "-k", "3", "--json"]).stdout)
    assert len(hits) == 3
    bad = runner.invoke(app, [*base, "index", str(listing), "--engine", "spark"])
    assert bad.exit_code == 1 and "'local' (the default) or 'ray'" in bad.stderr
