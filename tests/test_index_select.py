"""FAISS index selection, in-place updates of IVF indexes, training, recall tuning, retraining, mmap."""

from __future__ import annotations

import json

import numpy as np
import pytest

from glimpse.catalog import Catalog, FileUpdate
from glimpse.errors import IndexMismatchError, UserInputError
from glimpse.vectors import faiss as faiss_mod
from glimpse.vectors import select
from glimpse.vectors.faiss import FaissIndex
from glimpse.vectors.sync import open_index
from glimpse.vectors.synthetic import clustered_embeddings

DIM = 32
KEY = "synthetic-32"


def fill(catalog: Catalog, vectors: np.ndarray, start: int = 0) -> list[int]:
    """Store vectors in the catalog as if images /x/<i>.jpg had been indexed; returns their file ids."""
    catalog.register_model(KEY, "synthetic", DIM, {})
    updates = [FileUpdate(path=f"/x/{start + i}.jpg", size=1, mtime_ns=1, state="ok", hash=f"h{start + i}",
                          vector=v) for i, v in enumerate(vectors)]
    return catalog.apply(updates, KEY)


@pytest.fixture()
def catalog(tmp_path):
    cat = Catalog(tmp_path / "catalog.sqlite3")
    yield cat
    cat.close()


def exact_top(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-(queries @ vectors.T), axis=1)[:, :k]
    return ids[order]


# -- choosing ------------------------------------------------------------------------------------------
def test_parse_bytes():
    assert select.parse_bytes("2GB") == 2_000_000_000
    assert select.parse_bytes("512MiB") == 512 * 2**20
    assert select.parse_bytes("1.5g") == 1_500_000_000
    assert select.parse_bytes(4096) == 4096
    for bad in ("lots", "2 parsecs", "-1GB", "0"):
        with pytest.raises(UserInputError):
            select.parse_bytes(bad)


def test_choose_factory_by_size_and_budget():
    assert select.choose_factory(10_000, 512).factory == "Flat"
    assert select.choose_factory(1_000_000, 512).factory == "IVF1024,SQ8"
    roomy = select.choose_factory(1_000_000, 512, memory_budget=select.parse_bytes("4GB"))
    assert roomy.factory == "IVF1024,Flat" and roomy.bytes <= 4e9
    tight = select.choose_factory(1_000_000, 512, memory_budget=select.parse_bytes("300MB"))
    assert tight.factory.startswith("IVF1024,PQ") and tight.bytes <= 300e6
    # a flat index that does not fit the budget is not chosen even for a small collection
    assert select.choose_factory(40_000, 512, memory_budget=20_000_000).factory != "Flat"
    assert select.choose_factory(100_000_000, 512).factory == "IVF32768_HNSW32,SQ8"
    with pytest.raises(UserInputError, match="memory budget"):
        select.choose_factory(1_000_000, 512, memory_budget=1_000_000)


def test_nlist_stays_trainable():
    for n in (50, 1000, 50_000, 1_000_000):
        nlist = select.nlist_for(n)
        assert nlist * select.MIN_POINTS_PER_LIST <= n or nlist == 1
    assert select.nlist_for(1_000_000) == 1024
    assert select.nlist_for(100_000_000) == 32768


# -- IVF index with stable ids -------------------------------------------------------------------------
def test_ivf_add_remove_in_place_with_stable_ids(tmp_path):
    vectors = clustered_embeddings(2000, DIM, clusters=20, seed=1)
    ids = np.arange(2000, dtype=np.int64) * 7 + 3  # sparse ids, like catalog ids after deletions
    index = FaissIndex(tmp_path, KEY, DIM, "IVF32,SQ8")
    with pytest.raises(IndexMismatchError, match="not trained"):
        index.upsert(ids[:5], vectors[:5])
    select.train(index, vectors)
    index.upsert(ids, vectors)
    index.set_search_params("nprobe=32")  # all lists: exact up to SQ8 quantisation
    assert len(index) == 2000
    assert index.search(vectors[10:11], 1)[0].ids.tolist() == [ids[10]]

    assert index.remove(ids[[10, 11, 12]]) == 3
    assert index.remove(ids[[10]]) == 0  # already gone
    assert len(index) == 1997
    assert ids[10] not in index.search(vectors[10:11], 5)[0].ids.tolist()
    # upsert replaces: id 17 now carries vector 500, and is found there only once
    index.upsert(ids[[1]], vectors[[500]])
    hits = index.search(vectors[500:501], 2)[0].ids.tolist()
    assert set(hits) == {ids[1], ids[500]} and len(index) == 1997
    assert sorted(index.ids().tolist()) == sorted(set(ids.tolist()) - set(ids[[10, 11, 12]].tolist()))

    index.applied_change = 42
    index.save()
    loaded = FaissIndex.load(tmp_path, KEY, DIM)
    assert loaded.factory == "IVF32,SQ8" and loaded.search_params == "nprobe=32"
    assert loaded.trained_on == 2000 and loaded.applied_change == 42 and len(loaded) == 1997
    assert loaded.search(vectors[500:501], 2)[0].ids.tolist() == hits


def test_non_ivf_kinds_are_refused(tmp_path):
    with pytest.raises(IndexMismatchError, match="not an IVF index"):
        FaissIndex(tmp_path, KEY, DIM, "HNSW32")
    with pytest.raises(IndexMismatchError, match="not a FAISS factory"):
        FaissIndex(tmp_path, KEY, DIM, "IVFbanana")
    index = FaissIndex(tmp_path, KEY, DIM, "IVF1024,Flat")
    with pytest.raises(UserInputError, match="needs at least 1024 vectors"):
        select.train(index, clustered_embeddings(100, DIM))


def test_tune_reaches_recall_target_on_held_out_queries(tmp_path):
    everything = clustered_embeddings(6300, DIM, clusters=40, seed=2)
    vectors, held_out = everything[:6000], everything[6000:]  # same distribution, never indexed
    ids = np.arange(6000, dtype=np.int64)
    index = FaissIndex(tmp_path, KEY, DIM, "IVF64,Flat")
    select.train(index, vectors)
    index.upsert(ids, vectors)
    tuning = select.tune(index, ids, vectors, recall_target=0.9)
    nprobe = int(tuning.params.split("=")[1])
    assert 1 < nprobe < 64  # one list is not enough, scanning every list is not needed
    assert tuning.recall >= 0.9 and tuning.params in [p for p, _ in tuning.tried]
    # the smallest setting tried that reaches the target: every smaller nprobe tried falls short
    assert all(r < 0.9 for p, r in tuning.tried if int(p.split("=")[1]) < nprobe)
    # independent check on queries the tuner never saw
    truth = exact_top(vectors, ids, held_out, 10)
    found = np.stack([r.ids for r in index.search(held_out, 10)])
    assert select.recall_at_k(found, truth) >= 0.87

    # queries from elsewhere in the space (like text queries vs image embeddings) need their own tuning
    far = clustered_embeddings(200, DIM, clusters=40, seed=77)
    far_tuning = select.tune(index, ids, vectors, recall_target=0.9, query_vectors=far)
    assert far_tuning.recall >= 0.9
    far_found = np.stack([r.ids for r in index.search(far, 10)])
    assert select.recall_at_k(far_found, exact_top(vectors, ids, far, 10)) == pytest.approx(far_tuning.recall)


def test_tune_bisects_below_the_doubling_step(tmp_path):
    """nprobe is refined between the last two powers of two: search time grows with it, and a doubling
    that overshoots costs up to twice the search time the recall target needs."""
    everything = clustered_embeddings(20_200, DIM, clusters=40, seed=3)
    vectors, far = everything[:20_000], clustered_embeddings(200, DIM, clusters=40, seed=78)
    ids = np.arange(20_000, dtype=np.int64)
    index = FaissIndex(tmp_path, KEY, DIM, "IVF256,SQ8")
    select.train(index, vectors)
    index.upsert(ids, vectors)
    tuning = select.tune(index, ids, vectors, recall_target=0.95, query_vectors=far)
    nprobe = int(tuning.params.split("=")[1])
    assert tuning.recall >= 0.95 and nprobe & (nprobe - 1) != 0  # not a power of two: bisected
    truth = exact_top(vectors, ids, far, 10)
    recall_at = {}
    for probe in (nprobe, nprobe - max(1, nprobe // 8), 2 ** int(np.ceil(np.log2(nprobe)))):
        index.set_search_params(f"nprobe={probe}")
        recall_at[probe] = select.recall_at_k(np.stack([r.ids for r in index.search(far, 10)]), truth)
    # measured independently of the tuner: the choice reaches the target, 1/8 fewer lists do not
    assert recall_at[nprobe] == pytest.approx(tuning.recall) and recall_at[nprobe] >= 0.95
    assert recall_at[nprobe - max(1, nprobe // 8)] < 0.95


def text_like(vectors: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``float32[n, d]`` queries shaped like CLIP text embeddings next to image ones: each leans towards
    an image's topic, but all share an offset away from the image cloud (the modality gap)."""
    rng = np.random.default_rng(seed)
    gap = np.random.default_rng(5).normal(size=vectors.shape[1])
    gap /= np.linalg.norm(gap)
    rows = 0.35 * vectors[rng.choice(len(vectors), n)] + gap + 0.25 * rng.normal(size=(n, vectors.shape[1])) / 6
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_build_tunes_for_text_queries_too(tmp_path):
    vectors = clustered_embeddings(6000, DIM, clusters=40, seed=2)
    ids = np.arange(6000, dtype=np.int64)
    probes, fresh = text_like(vectors, 256, seed=1), text_like(vectors, 300, seed=2)  # tuning / unseen queries
    truth = exact_top(vectors, ids, fresh, 10)
    policy = select.IndexPolicy(recall_target=0.95)

    image_only = FaissIndex(tmp_path, KEY, DIM, "IVF64,Flat")
    select.build(image_only, ids, vectors, policy)
    gap_recall = select.recall_at_k(np.stack([r.ids for r in image_only.search(fresh, 10)]), truth)
    assert gap_recall < 0.9  # the problem: tuned on image-like queries, text-like ones miss their neighbours

    calls = []
    index = FaissIndex(tmp_path, KEY, DIM, "IVF64,Flat")
    tuning = select.build(index, ids, vectors, policy, lambda: calls.append(1) or probes)
    assert calls == [1]
    assert set(tuning.recall_by_set) == {"held_out", "text"} and min(tuning.recall_by_set.values()) >= 0.95
    # the prompts only stand in for unseen texts: they must beat the target by the margin
    assert tuning.recall_by_set["text"] >= 0.95 + select.TEXT_RECALL_MARGIN
    assert tuning.recall == min(tuning.recall_by_set.values())
    assert int(index.search_params.split("=")[1]) > int(image_only.search_params.split("=")[1])
    # measured independently: the tuning prompts themselves and text-like queries the tuner never saw
    probe_found = np.stack([r.ids for r in index.search(probes, 10)])
    assert select.recall_at_k(probe_found, exact_top(vectors, ids, probes, 10)) == pytest.approx(
        tuning.recall_by_set["text"])
    assert select.recall_at_k(np.stack([r.ids for r in index.search(fresh, 10)]), truth) >= 0.95

    # a flat index is exact: the (model-loading) text probe provider is never called
    flat = FaissIndex(tmp_path, KEY, DIM, "Flat")
    select.build(flat, ids, vectors, policy, lambda: pytest.fail("probes encoded for a flat index"))


def test_probe_prompts_are_fixed_and_bilingual():
    from glimpse.vectors.text_probes import PROBES, probe_prompts

    english = probe_prompts(("en",))
    assert len(english) == len(set(english)) == PROBES and english == probe_prompts(("en",))
    assert not any("\u4e00" <= ch <= "\u9fff" for prompt in english for ch in prompt)
    both = probe_prompts(("en", "zh"))
    chinese = [p for p in both if any("\u4e00" <= ch <= "\u9fff" for ch in p)]
    assert len(both) == PROBES and len(chinese) == PROBES // 4


def test_library_tunes_its_ivf_index_for_text_queries(open_lib):
    """A library's IVF index reaches the recall target for text queries embedded by its own model."""
    from glimpse.vectors.text_probes import text_probe_vectors

    lib = open_lib()
    spec = lib.spec
    data = clustered_embeddings(3000, spec.dim, clusters=30, seed=4)
    probes = text_probe_vectors(lib.encoder)  # not cached: no directory given
    # the image vectors sit around the text prompts' region, apart from it by a gap, like CLIP's
    shifted = data + 1.5 * probes.mean(axis=0)
    vectors = (shifted / np.linalg.norm(shifted, axis=1, keepdims=True)).astype(np.float32)
    lib.catalog.register_model(spec.key, spec.name, spec.dim, spec.to_dict())
    lib.catalog.apply([FileUpdate(path=f"/x/{i}.jpg", size=1, mtime_ns=1, state="ok", hash=f"h{i}", vector=v)
                       for i, v in enumerate(vectors)], spec.key)
    select.save_policy(lib.catalog, spec.key, select.IndexPolicy(flat_limit=1000, recall_target=0.95))

    lib.rebuild_index()
    index = lib._index
    assert index.factory.startswith("IVF") and index.search_params.startswith("nprobe=")
    cached = list((lib.directory / "index").glob(f"*{spec.key}*.textprobes-*.npy"))
    assert len(cached) == 1 and np.array_equal(np.load(cached[0]), probes)
    ids, stored = lib.catalog.embeddings(spec.key)
    texts = lib.encoder.encode_texts([f"holiday snapshot number {i}" for i in range(100)])  # never tuned on
    for queries in (probes, texts):
        found = np.stack([r.ids for r in index.search(queries, 10)])
        assert select.recall_at_k(found, exact_top(stored, ids, queries, 10)) >= 0.95


# -- maintenance through open_index --------------------------------------------------------------------
def test_flat_becomes_ivf_then_retrains_when_grown(tmp_path, catalog):
    directory = tmp_path / "index"
    data = clustered_embeddings(5200, DIM, clusters=30, seed=3)
    fill(catalog, data[:300])
    select.save_policy(catalog, KEY, select.IndexPolicy(flat_limit=1000, recall_target=0.9))
    index = open_index(directory, catalog, KEY, DIM)
    assert index.factory == "Flat" and len(index) == 300

    fill(catalog, data[300:1200], start=300)
    index = open_index(directory, catalog, KEY, DIM)
    assert index.factory == f"IVF{select.nlist_for(1200)},SQ8" and len(index) == 1200
    assert index.trained_on == 1200 and index.search_params.startswith("nprobe=")
    manifest = json.loads(index.manifest_path.read_text())
    assert manifest["factory"] == index.factory and manifest["trained_on"] == 1200

    # small growth and deletions are applied in place: same training
    fill(catalog, data[1200:2000], start=1200)
    catalog.delete_files([1, 2, 3])
    index = open_index(directory, catalog, KEY, DIM)
    assert index.trained_on == 1200 and len(index) == 1997 and not ({1, 2, 3} & set(index.ids().tolist()))
    assert index.search(data[500:501], 1)[0].ids.tolist() == [501]  # file ids start at 1

    # grown past 4x the trained regime: retrained on the current collection
    fill(catalog, data[2000:5200], start=2000)
    index = open_index(directory, catalog, KEY, DIM)
    assert index.trained_on == 5197 and len(index) == 5197
    assert index.factory == f"IVF{select.nlist_for(5197)},SQ8"

    # shrinking to 700 (under the flat limit, not under half of it) keeps the IVF index; to 400 goes exact
    catalog.delete_files(range(1, 4501))
    assert open_index(directory, catalog, KEY, DIM).factory.startswith("IVF")
    catalog.delete_files(range(4501, 4801))
    index = open_index(directory, catalog, KEY, DIM)
    assert index.factory == "Flat" and len(index) == 400


def test_explicit_kind_and_policy_change_rebuild(tmp_path, catalog):
    directory = tmp_path / "index"
    fill(catalog, clustered_embeddings(1500, DIM, clusters=20, seed=4))
    index = open_index(directory, catalog, KEY, DIM)
    assert index.factory == "Flat"
    select.update_policy(catalog, KEY, kind="IVF16,PQ8", recall_target=0.8)
    index = open_index(directory, catalog, KEY, DIM)
    assert index.factory == "IVF16,PQ8" and len(index) == 1500
    assert index.chosen_by["kind"] == "IVF16,PQ8"
    # unchanged policy: the next open keeps the index (no retraining on every open)
    again = open_index(directory, catalog, KEY, DIM)
    assert again.search_params == index.search_params and again.trained_on == 1500
    select.update_policy(catalog, KEY, kind="auto")
    assert open_index(directory, catalog, KEY, DIM).factory == "Flat"


def test_mmap_loading_is_read_only_until_changed(tmp_path, catalog, monkeypatch):
    directory = tmp_path / "index"
    data = clustered_embeddings(1300, DIM, clusters=20, seed=5)
    fill(catalog, data[:1200])
    select.save_policy(catalog, KEY, select.IndexPolicy(flat_limit=1000))
    writer = open_index(directory, catalog, KEY, DIM)
    assert writer.factory.startswith("IVF")
    monkeypatch.setattr(faiss_mod, "MMAP_MIN_BYTES", 0)
    reader = FaissIndex.load(directory, KEY, DIM, mmap=True)
    assert reader._mapped and reader.search_params == writer.search_params
    assert reader.search(data[7:8], 3)[0].ids.tolist() == writer.search(data[7:8], 3)[0].ids.tolist()
    # a reader that has to catch up reads the file fully first, then changes only its memory copy
    fill(catalog, data[1200:], start=1200)
    reader = open_index(directory, catalog, KEY, DIM, save=False)
    assert not reader._mapped and len(reader) == 1300
    assert reader.search(data[1250:1251], 1)[0].ids.tolist() == [1251]
    assert len(FaissIndex.load(directory, KEY, DIM)) == 1200  # the file is untouched by a reader


def test_mapped_lists_are_zero_copy_and_big_single_queries_split_lists(tmp_path, catalog, monkeypatch):
    """A mapped IVF index scans its lists in place (no OnDiskInvertedLists copy); a single query that scans
    many codes shares the lists out between threads and finds what one thread finds."""
    import faiss

    directory = tmp_path / "index"
    data = clustered_embeddings(1600, DIM, clusters=20, seed=11)
    fill(catalog, data[:1500])
    select.save_policy(catalog, KEY, select.IndexPolicy(flat_limit=1000))
    open_index(directory, catalog, KEY, DIM)
    monkeypatch.setattr(faiss_mod, "MMAP_MIN_BYTES", 0)
    reader = FaissIndex.load(directory, KEY, DIM, mmap=True)
    ivf = faiss.extract_index_ivf(reader.native)
    assert reader._mapped and type(faiss.downcast_InvertedLists(ivf.invlists)).__name__ == "ArrayInvertedLists"
    queries = data[1500:]
    batched = [r.ids.tolist() for r in reader.search(queries, 10)]  # queries shared out (parallel_mode 0)
    assert ivf.parallel_mode == 0
    monkeypatch.setattr(faiss_mod, "PARALLEL_SCAN_MIN", 1)
    faiss.omp_set_num_threads(2)
    single = [reader.search(q[None, :], 10)[0].ids.tolist() for q in queries]
    assert ivf.parallel_mode == 1  # the lists of one query were shared out
    assert single == batched
    monkeypatch.setattr(faiss_mod, "PARALLEL_SCAN_MIN", 10**12)
    assert [reader.search(q[None, :], 10)[0].ids.tolist() for q in queries] == batched


# -- the CLI -------------------------------------------------------------------------------------------
def test_cli_memory_budget_and_rebuild_kind(tmp_path, tiny_clip):
    from typer.testing import CliRunner

    from conftest import make_photos
    from glimpse.cli import app

    make_photos(tmp_path / "photos", 12)
    base = ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip)]
    runner = CliRunner()
    result = runner.invoke(app, [*base, "index", str(tmp_path / "photos"), "--memory-budget", "2GB", "--json"])
    assert result.exit_code == 0, result.output
    catalog = Catalog(tmp_path / "lib" / "catalog.sqlite3")
    key = json.loads(result.stdout)["model_key"]
    assert select.load_policy(catalog, key).memory_budget == 2_000_000_000
    status = json.loads(runner.invoke(app, [*base, "status", "--json"]).stdout)
    assert status["index_kind"].startswith("faiss IDMap2,Flat")

    result = runner.invoke(app, [*base, "rebuild-index", "--kind", "IVF2,Flat", "--recall-target", "0.9"])
    assert result.exit_code == 0, result.output
    assert "IVF2,Flat" in result.stderr and "nprobe=" in result.stderr
    policy = select.load_policy(catalog, key)
    assert (policy.kind, policy.recall_target) == ("IVF2,Flat", 0.9)
    hits = json.loads(runner.invoke(app, [*base, "search", "a photo", "-k", "12", "--json"]).stdout)
    assert len(hits) == 12  # nprobe tuned on 12 vectors in 2 lists reaches every list it needs
    catalog.close()

    bad = runner.invoke(app, [*base, "rebuild-index", "--kind", "HNSW32"])
    assert bad.exit_code == 1 and "not an IVF index" in bad.stderr
    bad = runner.invoke(app, [*base, "index", str(tmp_path / "photos"), "--memory-budget", "lots"])
    assert bad.exit_code == 1 and "is not a size" in bad.stderr


def test_bench_scale_command_measures_all_methods():
    from typer.testing import CliRunner

    from glimpse.cli import app

    result = CliRunner().invoke(app, ["bench-scale", "--n", "2000", "--dim", "16", "--recall-target", "0.9",
                                      "--flat-limit", "1000", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["method"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"faiss ann", "faiss exact", "numpy brute force"}
    assert rows["faiss exact"]["recall_at_10"] == 1.0 == rows["numpy brute force"]["recall_at_10"]
    assert rows["faiss ann"]["factory"].startswith("IVF") and rows["faiss ann"]["params"].startswith("nprobe=")
    assert 0.8 <= rows["faiss ann"]["recall_at_10"] <= 1.0
    assert rows["faiss ann"]["index_bytes"] < rows["faiss exact"]["index_bytes"]  # SQ8 codes vs float32
