"""Fixed-length text graphs (immich's ``int32[1, 77]``) cut to the query's length: exact for CLIP, refused elsewhere.

``glimpse.encoders.shorten`` rewrites the graph so it takes fewer than 77 tokens; the encoder uses the cut copy
only for families whose text tower is causal and pools the end-of-text position (``text_pools_eot``), and only
after checking it against the original graph.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glimpse.encoders import mapped
from glimpse.encoders.shorten import SEQUENCE_DIM, cut_sequence_axis
from glimpse.families import FAMILIES
from glimpse.registry import load_encoder, load_spec
from immich_fixtures import NAMES, TEXTS, make_immich_model

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cut")
    return {style: make_immich_model(root / NAMES[style], style) for style in ("clip", "siglip2", "mclip")}


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _cut(graph: Path, tmp_path: Path) -> Path:
    data = cut_sequence_axis(graph.read_bytes(), "text")
    assert data is not None
    out = tmp_path / f"{graph.parent.parent.name}-cut.onnx"
    out.write_bytes(data)
    return out


def test_the_cut_clip_graph_gives_the_full_graphs_vectors(models, tmp_path):
    graph = models["clip"] / "textual" / "model.onnx"
    full, cut = _session(graph), _session(_cut(graph, tmp_path))
    assert full.get_inputs()[0].shape == [1, 77] and cut.get_inputs()[0].shape == [1, SEQUENCE_DIM]
    tokenizer = load_encoder(str(models["clip"])).tokenizer
    batch = tokenizer.encode(TEXTS)  # padded to 77 with the pad token, as immich feeds them
    ids = batch.input_ids.astype(np.int32)
    assert ids.shape == (len(TEXTS), 77)
    for row, real in enumerate(batch.attention_mask.sum(1)):
        want = full.run(None, {"text": ids[row : row + 1]})[0]
        for keep in sorted({int(real), min(int(real) + 5, 77), 77}):  # the text alone, and padded a little
            got = cut.run(None, {"text": ids[row : row + 1, :keep]})[0]
            assert _cos(want, got) >= 0.99999
            assert np.abs(want - got).max() < 1e-5


def test_the_encoder_feeds_only_real_tokens_and_matches_the_full_graph(models):
    encoder = load_encoder(str(models["clip"]))
    vectors = encoder.encode_texts(TEXTS)
    assert encoder._cut  # the clip family's rule allowed it and the check passed
    full = _session(models["clip"] / "textual" / "model.onnx")
    ids = encoder.tokenizer.encode(encoder.prepare_texts(TEXTS, None)).input_ids.astype(np.int32)
    want = np.concatenate([full.run(None, {"text": ids[i : i + 1]})[0] for i in range(len(ids))])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, want, atol=1e-5)
    # a later process loads the checked copy from the cache without checking again
    assert mapped.cut_copy(models["clip"] / "textual" / "model.onnx") is not None
    again = load_encoder(str(models["clip"]))
    np.testing.assert_allclose(again.encode_texts(TEXTS), vectors, atol=1e-6)
    assert again._cut
    # the first session is unpacked (quick to create); the second use packs it in the background: same vectors
    unpacked = again.session("textual")
    np.testing.assert_allclose(again.encode_texts(TEXTS), vectors, atol=1e-6)
    again._packer.join()
    assert again.session("textual") is not unpacked
    np.testing.assert_allclose(again.encode_texts(TEXTS), vectors, atol=1e-6)
    again.close()


def test_only_causal_end_of_text_families_may_be_cut():
    # CLIP's text tower is causal and pools the end-of-text token; the others read their padding
    assert {name for name, row in FAMILIES.items() if row.text_pools_eot} == {"clip"}


def test_a_non_causal_tower_is_never_cut(models, tmp_path, monkeypatch):
    # The siglip2 fixture pools every position (padding included): cutting it changes the vectors, so
    # applying the rewrite where the family's rule forbids it would be wrong ...
    graph = models["siglip2"] / "textual" / "model.onnx"
    full, cut = _session(graph), _session(_cut(graph, tmp_path))
    encoder = load_encoder(str(models["siglip2"]))
    batch = encoder.tokenizer.encode(["a photo of a dog"])
    ids = batch.input_ids.astype(np.int32)
    real = int(batch.attention_mask.sum())
    assert _cos(full.run(None, {"text": ids})[0], cut.run(None, {"text": ids[:, :real]})[0]) < 0.999
    # ... and the encoder does not: the siglip family says no
    want = encoder.encode_texts(TEXTS)
    assert not encoder._cut
    assert mapped.cut_copy(graph) is None and not mapped.cut_refused(graph)  # not even tried
    # were the rule wrong, the check against the original graph still refuses the cut (and remembers it)
    monkeypatch.setitem(FAMILIES, "siglip", dataclasses.replace(FAMILIES["siglip"], text_pools_eot=True))
    forced = load_encoder(load_spec(str(models["siglip2"])))
    np.testing.assert_allclose(forced.encode_texts(TEXTS), want, atol=1e-6)
    assert not forced._cut and mapped.cut_refused(graph) and mapped.cut_copy(graph) is None


def test_a_tower_with_an_attention_mask_is_not_cut(models):
    # immich's M-CLIP (XLM-R) reads as family clip but feeds a mask to a bidirectional tower: not this rule's case
    encoder = load_encoder(str(models["mclip"]))
    assert encoder.spec.family == "clip"
    encoder.encode_texts(TEXTS)
    assert not encoder._cut


def test_the_rewrite_needs_no_onnx_package(models, tmp_path):
    # The light install has onnxruntime (and so protobuf) but not onnx.
    graph = models["clip"] / "textual" / "model.onnx"
    code = (
        "import importlib.abc, sys\n"
        "class NoOnnx(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('onnx', 'torch', 'transformers'):\n"
        "            raise ImportError(name + ' is blocked in this test')\n"
        "sys.meta_path.insert(0, NoOnnx())\n"
        "from pathlib import Path\n"
        "from glimpse.encoders.shorten import cut_sequence_axis\n"
        f"data = cut_sequence_axis(Path({str(graph)!r}).read_bytes(), 'text')\n"
        f"Path({str(tmp_path / 'cut.onnx')!r}).write_bytes(data)\n"
        "print(len(data))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert _session(tmp_path / "cut.onnx").get_inputs()[0].shape == [1, SEQUENCE_DIM]
    assert json.loads(proc.stdout) > 0
