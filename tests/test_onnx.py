"""The torch-free ONNX runtime: tokenizer, encoder, immich directories, CLI without torch, edge bundle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_photos
from glimpse.encoders.export import export_model
from glimpse.errors import ModelError
from glimpse.registry import load_encoder, load_spec
from glimpse.tokenizer import TextTokenizer
from torchless import cli_without_torch, immich_layout

TEXTS = ["a photo of a dog", "A RED car, on the beach!", "一只猫", "", "  spaces   everywhere ", "x " * 200]


@pytest.fixture(scope="module")
def clip_onnx(tiny_clip, tmp_path_factory) -> Path:
    return export_model(str(tiny_clip), tmp_path_factory.mktemp("onnx") / "clip-onnx", bundle=True).directory


# -- tokenizer -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("factory", ["make_tiny_clip", "make_tiny_chinese_clip", "make_tiny_siglip"])
def test_tokenizer_reproduces_checkpoint_tokenizer(factory, tmp_path):
    from transformers import AutoTokenizer

    import tiny_models
    from glimpse.encoders.export import tokenizer_json

    src = getattr(tiny_models, factory)(tmp_path / "src")
    spec = load_spec(str(src))
    (tmp_path / "tokenizer.json").write_text(tokenizer_json(load_encoder(spec)), encoding="utf-8")
    theirs = AutoTokenizer.from_pretrained(src)
    ours = TextTokenizer(tmp_path / "tokenizer.json", context_length=spec.context_length,
                         padding=spec.text_padding, pad_id=theirs.pad_token_id)
    expected = theirs(TEXTS, padding=spec.text_padding, truncation=True, max_length=spec.context_length)
    batch = ours.encode(TEXTS)
    assert batch.input_ids.tolist() == expected["input_ids"]
    assert batch.attention_mask.tolist() == expected["attention_mask"]
    if spec.family == "siglip":  # fixed-length padding, as SigLIP was trained
        assert batch.input_ids.shape == (len(TEXTS), spec.context_length)


def test_tokenizer_errors(tmp_path):
    with pytest.raises(ModelError, match=r"no tokenizer\.json"):
        TextTokenizer(tmp_path / "tokenizer.json", context_length=77)
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match="cannot read tokenizer"):
        TextTokenizer(tmp_path / "tokenizer.json", context_length=77)


def test_tokenizer_loads_a_compact_copy_of_pair_merges(tmp_path):
    """A BPE saved with ``["a", "b"]`` merges (tokenizers >= 0.20) loads from a cached copy with ``"a b"``
    merges: the same ids for every text, the published file untouched; a merge holding a space keeps the file."""
    from tokenizers import Tokenizer

    from glimpse.digests import cache_dir, file_sha256
    from glimpse.tokenizer import compact_source
    from tiny_models import write_small_clip_tokenizer

    path = write_small_clip_tokenizer(tmp_path / "tok") / "tokenizer.json"
    published = path.read_bytes()
    assert isinstance(json.loads(published)["model"]["merges"][0], list)  # the format this is about
    texts = [*TEXTS, "the quick brown fox's tail", "don't stop; 42 cats!", "naïve café"]
    expected = [e.ids for e in Tokenizer.from_file(str(path)).encode_batch(texts)]
    ours = TextTokenizer(path, context_length=1000, pad_id=0)
    copy = cache_dir() / "tokenizers" / f"{file_sha256(path)}-v1.json"
    merges = json.loads(copy.read_text(encoding="utf-8"))["model"]["merges"]
    assert merges and all(isinstance(m, str) and m.count(" ") == 1 for m in merges)
    assert [ours.ids(t) for t in texts] == expected
    again = TextTokenizer(path, context_length=1000, pad_id=0)  # now read from the copy
    assert [again.ids(t) for t in texts] == expected
    assert path.read_bytes() == published

    data = json.loads(published)
    data["model"]["merges"][0] = ["a b", "c"]  # not expressible as one "x y" string
    odd = tmp_path / "odd" / "tokenizer.json"
    odd.parent.mkdir()
    odd.write_text(json.dumps(data), encoding="utf-8")
    assert compact_source(odd) == odd.read_text(encoding="utf-8")
    assert not (cache_dir() / "tokenizers" / f"{file_sha256(odd)}-v1.json").exists()


# -- encoder ---------------------------------------------------------------------------------------------
def test_onnx_is_the_runtime_of_an_exported_dir(tiny_clip, clip_onnx):
    encoder = load_encoder(str(clip_onnx), batch_size=3)
    assert encoder.spec.runtime == "onnx" and encoder.key == load_spec(str(tiny_clip)).key
    vectors = encoder.encode_texts(["a", "b", "c", "d", "e"])  # two batches of at most 3
    assert vectors.shape == (5, encoder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder._sessions.keys() == {"textual"}  # a text query never loads the image tower


def test_prefetched_image_tower_gives_the_same_vectors(clip_onnx):
    from glimpse.encoders.parity import generated_images

    images = generated_images(3, seed=4)
    encoder = load_encoder(str(clip_onnx))
    encoder.prefetch_image_tower()
    prefetched = encoder.encode_images(images)  # waits for the background session, does not build a second
    assert encoder._prefetch is not None
    encoder._prefetch.join()
    assert set(encoder._sessions) == {"visual"}
    np.testing.assert_array_equal(prefetched, load_encoder(str(clip_onnx)).encode_images(images))
    encoder.close()


def test_image_batches_run_as_one_piece_per_core(clip_onnx):
    """A dynamic-batch image tower on 2 cores: a batch of 32 runs as two single-threaded pieces at once, with
    the vectors of one run over the whole batch; a batch too small to give each core PIECE_MIN images keeps
    one run with intra-op threads."""
    from glimpse.encoders.onnx import PIECE_MIN, OnnxEncoder
    from glimpse.encoders.parity import generated_images
    from glimpse.preprocess import preprocess_batch

    spec = load_spec(str(clip_onnx))
    batch = preprocess_batch(generated_images(2 * PIECE_MIN + 3, seed=5), spec.preprocess)
    pieces = OnnxEncoder(spec, clip_onnx, batch_size=2 * PIECE_MIN + 3, threads=2)
    whole = OnnxEncoder(spec, clip_onnx, batch_size=2 * PIECE_MIN - 1, threads=2)
    one_core = OnnxEncoder(spec, clip_onnx, batch_size=64, threads=1)
    got = pieces.encode_pixels(batch)
    assert pieces._workers["visual"] == 2 and pieces.session("visual").get_session_options().intra_op_num_threads == 1
    assert one_core.encode_pixels(batch[:1]).shape == (1, spec.dim)
    assert one_core._workers["visual"] == 1
    reference = one_core.encode_pixels(batch)
    np.testing.assert_allclose(got, reference, atol=1e-6)
    np.testing.assert_allclose(whole.encode_pixels(batch), reference, atol=1e-6)
    assert whole._workers["visual"] == 1 and whole.session("visual").get_session_options().intra_op_num_threads == 2
    # Only pieces let a second batch's work follow the first's core by core (the indexer overlaps two then).
    assert (pieces.overlapping_batches, whole.overlapping_batches, one_core.overlapping_batches) == (2, 1, 1)
    # Two batches at once give each its own vectors.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(pieces.encode_pixels, [batch, batch[::-1]])
    np.testing.assert_allclose(first, reference, atol=1e-6)
    np.testing.assert_allclose(second, reference[::-1], atol=1e-6)
    for encoder in (pieces, whole, one_core):
        encoder.close()


def test_unknown_or_missing_device_is_a_clear_error(clip_onnx):
    with pytest.raises(ModelError, match="unknown device"):
        load_encoder(str(clip_onnx), device="abacus")
    with pytest.raises(ModelError, match=r"CUDAExecutionProvider|TensorrtExecutionProvider"):
        if "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers():
            pytest.skip("this onnxruntime has CUDA")
        load_encoder(str(clip_onnx), device="cuda")


def test_missing_graph_file_is_a_model_error(clip_onnx, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(clip_onnx, copy)
    (copy / "visual.onnx").unlink()
    encoder = load_encoder(str(copy))
    encoder.prefetch_image_tower()  # the background load fails quietly; the encode below says why
    assert encoder.encode_texts(["still fine"]).shape[0] == 1
    with pytest.raises(ModelError, match=r"visual\.onnx is missing"):
        encoder.encode_images(__import__("glimpse.encoders.parity", fromlist=["x"]).generated_images(1))


# -- immich-style directories ----------------------------------------------------------------------------
def test_immich_style_directory(tiny_clip, clip_onnx, tmp_path):
    """An immich layout (open_clip config, input names 'image'/'text', int ids, no mask) runs as-is."""
    immich = immich_layout(clip_onnx, tmp_path / "ViT-tiny__test")
    source = load_spec(str(tiny_clip))
    pre = source.preprocess

    spec = load_spec(str(immich))
    assert spec.runtime == "onnx" and spec.extra["onnx"]["layout"] == "immich"
    assert spec.preprocess == pre and spec.dim == source.dim
    ours, reference = load_encoder(str(immich)), load_encoder(str(tiny_clip))
    from glimpse.encoders.parity import generated_images

    images = generated_images(3, seed=9)
    np.testing.assert_allclose(ours.encode_images(images), reference.encode_images(images), atol=2e-5)
    # The renamed graph still takes the attention mask; open_clip-style argmax pooling makes padding harmless.
    np.testing.assert_allclose(ours.encode_texts(["a dog", "a red car"]),
                               reference.encode_texts(["a dog", "a red car"]), atol=2e-5)


def test_immich_dir_with_bad_preprocess_is_a_model_error(clip_onnx, tmp_path):
    immich = tmp_path / "m"
    for part, name in (("visual", "visual.onnx"), ("textual", "textual.onnx")):
        (immich / part).mkdir(parents=True)
        (immich / part / "model.onnx").write_bytes((clip_onnx / name).read_bytes())
    (immich / "textual" / "tokenizer.json").write_bytes((clip_onnx / "tokenizer.json").read_bytes())
    (immich / "config.json").write_text(json.dumps({"embed_dim": 16}))
    (immich / "visual" / "preprocess_cfg.json").write_text(json.dumps({"size": 32, "resize_mode": "letterbox"}))
    with pytest.raises(ModelError, match="resize_mode 'letterbox'"):
        load_spec(str(immich))


# -- torch-free CLI --------------------------------------------------------------------------------------
def test_index_and_search_never_import_torch(clip_onnx, tmp_path):
    make_photos(tmp_path / "photos", 5)
    base = ["--library", str(tmp_path / "lib"), "--model", str(clip_onnx)]
    result, stdout = cli_without_torch([*base, "index", str(tmp_path / "photos"), "--json"])
    assert result == {"code": 0, "heavy": []}
    assert json.loads(stdout)["encoded"] == 5
    result, stdout = cli_without_torch([*base, "search", "a photo of a dog", "-k", "3", "--json"])
    assert result == {"code": 0, "heavy": []}
    hits = json.loads(stdout)
    assert len(hits) == 3 and hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    # Search by an indexed image finds that image first (a real round trip through the ONNX towers).
    photo = str((tmp_path / "photos" / "img_002.jpg").resolve())
    result, stdout = cli_without_torch([*base, "search", "", "--image", photo, "-k", "1", "--json"])
    assert result["code"] == 0 and json.loads(stdout)[0]["path"] == photo


def test_library_indexed_with_torch_is_searchable_with_fp32_onnx(tiny_clip, clip_onnx, open_lib, tmp_path):
    """fp32 export keeps the key, so a torch-built library answers ONNX queries with the same vectors."""
    make_photos(tmp_path / "photos", 4)
    with_torch = open_lib(tiny_clip)
    with_torch.index([tmp_path / "photos"])
    torch_hits = [(h.path, round(h.score, 4)) for h in with_torch.search("a red car", 4)]
    with_torch.close()
    with_onnx = open_lib(clip_onnx)
    assert with_onnx.spec.key == with_torch.spec.key
    assert [(h.path, round(h.score, 4)) for h in with_onnx.search("a red car", 4)] == torch_hits


def test_import_glimpse_is_light():
    code = "import glimpse, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
           "('torch', 'transformers', 'onnxruntime')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- edge bundle -----------------------------------------------------------------------------------------
def test_feature_matmul_graph_is_normalised_topk():
    import onnxruntime as ort
    from onnx import save

    from glimpse.bundle import feature_matmul_model

    rng = np.random.default_rng(0)
    query = rng.normal(size=(3, 8)).astype(np.float32) * 5
    gallery = rng.normal(size=(20, 8)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        save(feature_matmul_model(), f"{tmp}/m.onnx")
        scores, indices = ort.InferenceSession(f"{tmp}/m.onnx").run(
            None, {"query": query, "gallery": gallery, "k": np.array([4], np.int64)})
    expected = (query / np.linalg.norm(query, axis=1, keepdims=True)) @ gallery.T
    np.testing.assert_array_equal(indices, np.argsort(-expected, axis=1)[:, :4])
    np.testing.assert_allclose(scores, np.sort(expected, axis=1)[:, ::-1][:, :4], atol=1e-5)


def test_bundle_runner_needs_only_onnxruntime_numpy_pillow(clip_onnx, tmp_path):
    bundle = clip_onnx / "bundle"
    assert {"image_encoder.onnx", "text_encoder.onnx", "tokenizer.json", "feature_matmul.onnx", "texts.txt",
            "texts_ids.json", "config.json", "run.py"} <= {p.name for p in bundle.iterdir()}
    assert not list(bundle.glob("*.data"))  # self-contained graphs, as NPU converters take them
    from glimpse.bundle import runner_source

    # run.py is the packaged, linted glimpse/bundle_runner.py, byte for byte
    assert (bundle / "run.py").read_bytes() == runner_source() and b"import glimpse" not in runner_source()
    import shutil

    work = tmp_path / "bundle"
    shutil.copytree(bundle, work)
    photos = make_photos(tmp_path / "photos", 4)
    # Only onnxruntime, numpy and Pillow: glimpse, tokenizers, torch and transformers are blocked.
    guard = ("import sys, runpy, importlib.abc\n"
             "class B(importlib.abc.MetaPathFinder):\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] in ('glimpse', 'tokenizers', 'torch', 'transformers'):\n"
             "            raise ImportError(name)\n"
             "sys.meta_path.insert(0, B())\n"
             "sys.argv = sys.argv[1:]\n"
             "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    run = [sys.executable, "-c", guard, str(work / "run.py")]
    subprocess.run([*run, "index", str(tmp_path / "photos")], check=True, capture_output=True, cwd=tmp_path)
    gallery = np.load(work / "gallery.npy")
    from glimpse.images import open_image

    # The runner decodes JPEGs at reduced scale like the indexer does, so compare with the indexer's decode.
    encoder = load_encoder(str(clip_onnx))
    min_side = encoder.spec.preprocess.min_side
    reference = encoder.encode_images([open_image(str(p), min_side=min_side).image for p in sorted(photos)])
    np.testing.assert_allclose(gallery, reference, atol=1e-4)
    first = (work / "texts.txt").read_text(encoding="utf-8").splitlines()[0]
    out = subprocess.run([*run, "search", first, "-k", "2"], check=True, capture_output=True, text=True).stdout
    scores = reference @ load_encoder(str(clip_onnx)).encode_texts([first])[0]
    best = str(sorted(photos)[int(np.argmax(scores))])
    assert out.splitlines()[0].endswith(best)


# -- CLI: export, bench ----------------------------------------------------------------------------------
def test_cli_export_and_its_errors(tiny_clip, tmp_path):
    from typer.testing import CliRunner

    from glimpse.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["export", str(tiny_clip), str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["parity"]["passed"] is True and data["key"] == load_spec(str(tiny_clip)).key
    assert runner.invoke(app, ["export", str(tiny_clip), str(tmp_path / "o2"), "--int8", "--fp16"]).exit_code == 1
    assert runner.invoke(app, ["export", str(tiny_clip), str(tmp_path / "out")]).exit_code == 1  # not empty
    assert runner.invoke(app, ["export", str(tiny_clip)]).exit_code == 2


def test_bench_reports_every_stage(clip_onnx, tmp_path):
    from glimpse.bench import bench_models

    photos = make_photos(tmp_path / "photos", 6)
    (row,) = bench_models([str(clip_onnx)], [str(tmp_path / "photos")], limit=10, batch_size=4)
    assert row.runtime == "onnx" and row.peak_mib > 0
    stages = {s.name: s for s in row.stages}
    assert list(stages) == ["load", "decode", "encode", "text", "total"]
    assert stages["encode"].items == len(photos) and stages["total"].items == len(photos)
    assert all(s.seconds > 0 and s.cpu_percent > 0 for s in row.stages)
