"""Which FAISS index a collection gets, and keeping it trained and tuned as the collection changes.

* ``choose_factory(n, dim, memory_budget)``: exact ``Flat`` below ``flat_limit`` vectors (50k); beyond, an
  IVF index whose codes fit the memory budget — ``,Flat`` (4·d bytes/vector), ``,SQ8`` (d bytes) or
  ``,PQm`` (m bytes) — with ~4·√n lists (an HNSW coarse quantizer from 16k lists on, so assigning a
  query to its lists stays cheap).
* ``train``: trains an empty IVF index on a random sample of the stored embeddings.
* ``tune``: picks the (nearly) smallest ``nprobe`` — doubling, then bisecting the last step — whose
  recall@k against exact search, measured on held-out queries — and on embedded text prompts when the
  caller supplies them (``text_queries``) — reaches the recall target.
* ``maintain``: called after the index caught up with the catalog; switches kind when the collection
  crossed the flat limit, when the policy changed, or when it grew past the trained regime (retrain).

The policy per model key (kind ``auto`` or an explicit factory, memory budget, recall target) is kept
in the catalog's ``meta`` table, so every process opening the library applies the same one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from glimpse.errors import UserInputError
from glimpse.vectors.faiss import FaissIndex, is_flat

if TYPE_CHECKING:
    from glimpse.catalog import Catalog

FLAT_LIMIT = 50_000
BIG_COLLECTION = 10_000_000
# Retrain once the collection is this many times bigger than the sample the lists were trained on:
# beyond that the centroids no longer describe the data and the lists grow unbalanced.
GROWTH_RETRAIN = 4.0
# faiss warns below 39 training points per centroid; 64 per centroid trains well at a fraction of the cost.
MIN_POINTS_PER_LIST = 39
TRAIN_POINTS_PER_LIST = 64
MAX_TRAIN_SAMPLE = 500_000
PQ_MIN_TRAIN = 256  # 8-bit PQ learns 256 centroids per sub-quantizer
HNSW_QUANTIZER_FROM = 16_384
DEFAULT_RECALL_TARGET = 0.95
# tune() refines nprobe to 1/NPROBE_STEPS of the doubling step that first reached the target
NPROBE_STEPS = 16
# The text prompts stand in for what users will type, not a sample of it: at 1M vectors unseen text queries
# reached up to 0.02 less recall than the prompts at the same nprobe (docs/benchmarks/scale.md), so the
# prompts must beat the target by this much.
TEXT_RECALL_MARGIN = 0.015
# Per stored vector beyond its code: its id in the list (8 bytes) and its direct-map entry (~16 bytes).
ID_OVERHEAD_BYTES = 24
_META_KEY = "index_policy.{}"

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str | int) -> int:
    """``"2GB"`` → 2·10⁹, ``"512MiB"`` → 512·2²⁰, ``"1.5g"``, ``4096`` → bytes (int)."""
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        unit = match.group(2).lower() if match else ""
        if not match or unit not in _UNITS:
            raise UserInputError(f"{text!r} is not a size; write e.g. 2GB, 512MB or 1.5GiB")
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise UserInputError(f"a memory budget must be positive, got {text!r}")
    return value


@dataclass(frozen=True)
class IndexPolicy:
    """How the index of one model key is chosen. ``kind``: ``"auto"`` or an explicit factory string."""

    kind: str = "auto"
    memory_budget: int | None = None
    recall_target: float = DEFAULT_RECALL_TARGET
    flat_limit: int = FLAT_LIMIT


def load_policy(catalog: Catalog, model_key: str) -> IndexPolicy:
    raw = catalog.get_meta(_META_KEY.format(model_key))
    return IndexPolicy(**json.loads(raw)) if raw else IndexPolicy()


def save_policy(catalog: Catalog, model_key: str, policy: IndexPolicy) -> None:
    if not 0.0 < policy.recall_target <= 1.0:
        raise UserInputError(f"the recall target must be in (0, 1], got {policy.recall_target}")
    catalog.set_meta(_META_KEY.format(model_key), json.dumps(asdict(policy), sort_keys=True))


def update_policy(catalog: Catalog, model_key: str, **changes: object) -> IndexPolicy:
    """Change some fields of the stored policy (``None`` values leave a field as it is)."""
    policy = replace(load_policy(catalog, model_key), **{k: v for k, v in changes.items() if v is not None})
    save_policy(catalog, model_key, policy)
    return policy


@dataclass(frozen=True)
class IndexChoice:
    """A factory string with its estimated resident size (bytes) and why it was chosen."""

    factory: str
    bytes: int
    reason: str


def nlist_for(n: int) -> int:
    """Number of IVF lists for ``n`` vectors: the power of two nearest √n (4·√n from 10M vectors on).

    √n keeps k-means training to a minute on a laptop at 1M vectors (1024 lists); faiss' 4·√n–16·√n
    pays off at the sizes that are built on big machines anyway. Never more lists than ``n`` can train.
    """
    target = (4 if n >= BIG_COLLECTION else 1) * math.sqrt(max(n, 1))
    nlist = 2 ** round(math.log2(max(target, 1)))
    while nlist > 1 and nlist * MIN_POINTS_PER_LIST > n:
        nlist //= 2
    return max(nlist, 1)


def _pq_sizes(dim: int) -> list[int]:
    """PQ sub-quantizer counts (bytes per vector) that divide ``dim``, largest first, at most d/4."""
    return [m for m in (dim // 4, dim // 8, dim // 16, dim // 32) if m >= 1 and dim % m == 0]


def estimate_bytes(factory: str, n: int, dim: int) -> int:
    """Rough resident size of ``n`` vectors in ``factory`` (codes + ids + coarse centroids)."""
    if is_flat(factory):
        return n * (4 * dim + 16)  # vectors + the IDMap2 id array and reverse map
    match = re.match(r"IVF(\d+)", factory)
    nlist = int(match.group(1)) if match else 0
    code = factory.split(",")[-1]
    if code == "Flat":
        per = 4 * dim
    elif code.startswith("SQ"):
        bits = {"SQ8": 8, "SQ6": 6, "SQ4": 4, "SQfp16": 16}.get(code, 8)
        per = dim * bits // 8
    elif code.startswith("PQ"):
        per = int(re.match(r"PQ(\d+)", code).group(1)) if re.match(r"PQ(\d+)", code) else dim // 8
    else:
        per = 4 * dim
    quantizer = nlist * dim * 4 * (2 if "HNSW" in factory else 1)
    return n * (per + ID_OVERHEAD_BYTES) + quantizer


def choose_factory(n: int, dim: int, memory_budget: int | None = None, *, flat_limit: int = FLAT_LIMIT) -> IndexChoice:
    """The index for ``n`` vectors of dimension ``dim`` within ``memory_budget`` bytes (None: no limit).

    Preference order is by accuracy: Flat (exact) while small, then IVF with full vectors, SQ8, then PQ
    with fewer and fewer bytes. Without a budget a big collection gets SQ8 (4x smaller than float32 at a
    recall cost of ~1%).
    """
    fits = (lambda size: True) if memory_budget is None else (lambda size: size <= memory_budget)
    if n < flat_limit:
        size = estimate_bytes("Flat", n, dim)
        if fits(size):
            return IndexChoice("Flat", size, f"{n} vectors < {flat_limit}: exact search is fast enough")
    nlist = nlist_for(n)
    coarse = f"IVF{nlist}_HNSW32" if nlist >= HNSW_QUANTIZER_FROM else f"IVF{nlist}"
    codes = ["SQ8"] if memory_budget is None else ["Flat", "SQ8"]
    if n >= PQ_MIN_TRAIN:
        codes += [f"PQ{m}" for m in _pq_sizes(dim)]
    for code in codes:
        factory = f"{coarse},{code}"
        size = estimate_bytes(factory, n, dim)
        if fits(size):
            budget = "no memory budget" if memory_budget is None else f"fits {memory_budget / 1e9:.2f} GB"
            return IndexChoice(factory, size, f"{n} vectors, {budget} (~{size / 1e9:.2f} GB)")
    smallest = estimate_bytes(f"{coarse},{codes[-1]}", n, dim)
    raise UserInputError(
        f"{n} vectors of dimension {dim} need at least ~{smallest / 1e9:.2f} GB even as {coarse},{codes[-1]}, "
        f"but the memory budget is {memory_budget / 1e9:.2f} GB; raise --memory-budget or use a Milvus store"
    )


# -- training and tuning ----------------------------------------------------------------------------
def _sample(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False)) if size < n else np.arange(n)


def train(index: FaissIndex, vectors: np.ndarray, *, seed: int = 0) -> int:
    """Train an IVF ``index`` on a sample of ``float32[n, d]`` stored vectors; returns the sample size."""
    if index.is_trained:
        return 0
    import faiss

    native = index.native
    ivf = faiss.downcast_index(faiss.extract_index_ivf(native))  # the concrete IVF class, for its fields
    nlist = ivf.nlist
    if hasattr(ivf, "do_polysemous_training"):
        # On by default for IVF-PQ, minutes of annealing for a Hamming-distance filter we never use.
        ivf.do_polysemous_training = False
    needed = max(nlist, PQ_MIN_TRAIN if ",PQ" in index.factory else 1)
    if len(vectors) < needed:
        raise UserInputError(
            f"the {index.factory} index needs at least {needed} vectors to train, the library has "
            f"{len(vectors)}; pick fewer lists (e.g. IVF{nlist_for(len(vectors))}) or keep 'auto'"
        )
    size = min(len(vectors), max(needed, nlist * TRAIN_POINTS_PER_LIST), MAX_TRAIN_SAMPLE)
    sample = np.ascontiguousarray(vectors[_sample(len(vectors), size, seed)], dtype=np.float32)
    native.train(sample)
    index.trained_on = len(vectors)
    return size


@dataclass(frozen=True)
class Tuning:
    """Result of ``tune``: the parameters set, the recall@k they reach (the lowest over the query sets),
    every setting tried with that recall, and the recall of each query set at the chosen setting."""

    params: str
    recall: float
    tried: list[tuple[str, float]]
    recall_by_set: dict[str, float] = field(default_factory=dict)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` (int64[q, k]) present in the same row of ``found``."""
    hits = [len(set(f[f >= 0].tolist()) & set(t[t >= 0].tolist())) / max((t >= 0).sum(), 1)
            for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) if hits else 1.0


def _drop_self(rows: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """Rows of ``k + 1`` ids without each query's own id (``own`` int64[q]), cut to ``k`` ids."""
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for i, (row, me) in enumerate(zip(rows, own, strict=True)):
        kept = row[(row != me) & (row >= 0)][:k]
        out[i, : len(kept)] = kept
    return out


@dataclass(frozen=True)
class _QuerySet:
    """Tuning queries ``float32[q, d]``, the stored id each must not find (-1: none), exact top-k ids."""

    name: str
    vectors: np.ndarray
    own: np.ndarray
    truth: np.ndarray


def _query_set(name: str, q: np.ndarray, own: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int) -> _QuerySet:
    import faiss

    q = np.ascontiguousarray(q, dtype=np.float32)
    _, exact_rows = faiss.knn(q, np.ascontiguousarray(vectors, dtype=np.float32), k + 1,
                              metric=faiss.METRIC_INNER_PRODUCT)
    return _QuerySet(name, q, own, _drop_self(ids[exact_rows], own, k))


def tune(index: FaissIndex, ids: np.ndarray, vectors: np.ndarray, recall_target: float = DEFAULT_RECALL_TARGET,
         *, k: int = 10, queries: int = 200, seed: int = 0, query_vectors: np.ndarray | None = None,
         extra_queries: np.ndarray | None = None) -> Tuning:
    """Smallest ``nprobe`` reaching ``recall_target`` recall@k vs exact search over ``(ids, vectors)``.

    ``ids`` int64[n] and ``vectors`` float32[n, d] must be what the index holds. Queries are held out
    leave-one-out: a sample of stored vectors, each searched with its own entry excluded from both the
    exact and the approximate answer, so they follow the collection's distribution without finding
    themselves. When no setting reaches the target the most thorough one is kept and its recall reported.

    ``query_vectors`` float32[q, d]: tune on these instead of the held-out sample.
    ``extra_queries`` float32[q, d]: a second query set that must reach the target too — embedded text
    prompts: text embeddings sit apart from image embeddings in CLIP space (the modality gap), so an
    ``nprobe`` tuned on image-like queries alone probes too few lists for text queries. They must reach
    the target plus ``TEXT_RECALL_MARGIN``, as a stand-in for text queries the tuner never sees.
    """
    import faiss

    if is_flat(index.factory) or len(ids) == 0:
        index.set_search_params("")
        return Tuning("", 1.0, [])
    k = min(k, len(ids) - 1)
    if k < 1:
        index.set_search_params("")
        return Tuning("", 1.0, [])
    if query_vectors is not None:
        sets = [_query_set("queries", query_vectors, np.full(len(query_vectors), -1, dtype=np.int64), ids, vectors, k)]
    else:
        rows = _sample(len(ids), min(queries, len(ids)), seed + 1)
        sets = [_query_set("held_out", vectors[rows], ids[rows], ids, vectors, k)]
    if extra_queries is not None and len(extra_queries):
        if extra_queries.ndim != 2 or extra_queries.shape[1] != vectors.shape[1]:
            raise UserInputError(f"tuning queries must be float32[q, {vectors.shape[1]}], got {extra_queries.shape}")
        # not stored vectors: nothing to leave out
        sets.append(_query_set("text", extra_queries, np.full(len(extra_queries), -1, dtype=np.int64), ids, vectors, k))
    nlist = faiss.extract_index_ivf(index.native).nlist
    tried: list[tuple[str, float]] = []
    by_set: list[dict[str, float]] = []
    probed: list[int] = []
    passed: list[bool] = []
    wanted = {qs.name: min(1.0, recall_target + (TEXT_RECALL_MARGIN if qs.name == "text" else 0.0)) for qs in sets}

    def reaches(nprobe: int) -> bool:
        params = f"nprobe={nprobe}"
        if "HNSW" in index.factory:  # the HNSW quantizer must return at least nprobe lists
            params += f",quantizer_efSearch={max(2 * nprobe, 64)}"
        index.set_search_params(params)
        recalls = {}
        for qs in sets:
            found = _drop_self(np.stack([np.pad(r.ids, (0, k + 1 - len(r.ids)), constant_values=-1)
                                         for r in index.search(qs.vectors, k + 1)]), qs.own, k)
            recalls[qs.name] = recall_at_k(found, qs.truth)
        tried.append((params, min(recalls.values())))
        by_set.append(recalls)
        probed.append(nprobe)
        passed.append(all(recalls[name] >= wanted[name] for name in recalls))
        return passed[-1]

    # Doubling finds the target within a factor of two; search time grows with nprobe, so bisect that
    # last doubling down to 1/16 of it: text queries need hundreds of lists at 1M vectors, where a
    # power of two can cost a third more search time than the target needs.
    low, high = 0, 1
    while not reaches(high) and high < nlist:
        low, high = high, min(high * 2, nlist)
    if passed[-1]:
        while high - low > max(1, high // NPROBE_STEPS):
            middle = (low + high) // 2
            if reaches(middle):
                high = middle
            else:
                low = middle
    passing = [i for i, ok in enumerate(passed) if ok]
    best = (min(passing, key=lambda i: probed[i]) if passing
            else max(range(len(tried)), key=lambda i: tried[i][1]))
    index.set_search_params(tried[best][0])
    return Tuning(tried[best][0], tried[best][1], tried, by_set[best])


# -- keeping an index right for its collection -------------------------------------------------------
def wanted_factory(policy: IndexPolicy, n: int, dim: int) -> str:
    if policy.kind != "auto":
        return policy.kind
    return choose_factory(n, dim, policy.memory_budget, flat_limit=policy.flat_limit).factory


def needs_rebuild(index: FaissIndex, policy: IndexPolicy, n: int) -> bool:
    """Whether ``index`` (holding ``n`` vectors) should be rebuilt under ``policy``.

    Rebuilt when: the policy it was built under changed; it is flat and the collection crossed the
    flat limit; it is IVF and the collection grew past ``GROWTH_RETRAIN`` times its training size, or
    shrank below half the flat limit.
    A collection that merely drifts within the trained regime keeps its index (no flapping).
    """
    if index.chosen_by and index.chosen_by != asdict(policy):
        return True
    want = wanted_factory(policy, n, index.dim)
    if is_flat(index.factory):
        return not is_flat(want)
    grown = n > GROWTH_RETRAIN * max(index.trained_on, 1)
    # Shrunk well below the flat limit (half of it, so a collection hovering at the limit does not flip
    # back and forth): exact search is cheap again.
    shrunk = is_flat(want) and n < policy.flat_limit // 2
    return grown or shrunk or (policy.kind != "auto" and want != index.factory)


#: Supplies embedded text prompts float32[q, d] for tuning; called only when an IVF index gets tuned, so a
#: small (flat) library never loads its model for it.
TextQueries = Callable[[], np.ndarray]


def build(index: FaissIndex, ids: np.ndarray, vectors: np.ndarray, policy: IndexPolicy,
          text_queries: TextQueries | None = None) -> Tuning:
    """Train (if IVF) and fill an empty ``index`` with ``(ids, vectors)``, then tune it to the policy.

    ``text_queries``: when given, ``nprobe`` is tuned so that these text query vectors reach the recall
    target as well as held-out image vectors do.
    """
    train(index, vectors)
    if len(ids):
        index.upsert(ids, vectors)
    index.chosen_by = asdict(policy)
    extra = text_queries() if text_queries is not None and not is_flat(index.factory) and len(ids) else None
    return tune(index, ids, vectors, policy.recall_target, extra_queries=extra)


def rebuilt(index: FaissIndex, catalog: Catalog, policy: IndexPolicy | None = None,
            text_queries: TextQueries | None = None) -> tuple[FaissIndex, Tuning]:
    """A new index of the policy's factory, trained, filled from the catalog and tuned (not saved)."""
    policy = policy or load_policy(catalog, index.model_key)
    last = catalog.last_change()  # read before the vectors: later changes are replayed next time
    ids, vectors = catalog.embeddings(index.model_key)
    fresh = FaissIndex(index.directory, index.model_key, index.dim, wanted_factory(policy, len(ids), index.dim))
    tuning = build(fresh, ids, vectors, policy, text_queries)
    fresh.applied_change = last
    fresh.catalog_id = catalog.catalog_id
    return fresh, tuning


def maintain(index: FaissIndex, catalog: Catalog, text_queries: TextQueries | None = None) -> FaissIndex | None:
    """A rebuilt index when ``index`` no longer suits its collection and policy, else None."""
    policy = load_policy(catalog, index.model_key)
    if not index.chosen_by and policy == IndexPolicy() and len(index) < policy.flat_limit and is_flat(index.factory):
        return None  # the common small-library case: nothing to decide
    if not needs_rebuild(index, policy, len(index)):
        return None
    return rebuilt(index, catalog, policy, text_queries)[0]
