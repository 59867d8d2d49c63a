"""Vector stores derived from the catalog, and the code that keeps them in step with it.

- ``base``: the ``VectorIndex`` contract (upsert, remove, search, range search, save, close);
- ``faiss`` / ``milvus``: the two store classes; ``stores``: which ``--store`` value names which
  (``check_store``);
- ``sync``: opening a store with its checks, catching it up with the catalog's change log, rebuilding it;
- ``select``: choosing, training and tuning the FAISS index kind; ``files``: safe names, atomic writes;
- ``text_probes``, ``synthetic``, ``bench_scale``: tuning queries, test data, the scale benchmark.
"""
