"""immich ONNX folders exactly as immich's exporter writes them: static batch 1, int32 text, full-length
padding, cleaning, NLLB language tokens, M-CLIP's two inputs, SigLIP family from the config.

The goldens (``tests/immich_goldens.json``) are immich's own reader run on the same fixtures; see
``tests/make_immich_goldens.py`` for how they were made.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_photos
from glimpse.errors import GlimpseError, ModelError, UserInputError
from glimpse.registry import load_encoder, load_spec
from immich_fixtures import NAMES, STYLES, TEXTS, images, make_immich_model

pytest.importorskip("torch")
GOLDENS = json.loads((Path(__file__).parent / "immich_goldens.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("immich")
    return {style: make_immich_model(root / NAMES[style], style) for style in STYLES}


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_fixtures_are_written_as_immich_writes_them(models):
    import onnxruntime as ort

    for style, directory in models.items():
        visual = ort.InferenceSession(str(directory / "visual" / "model.onnx")).get_inputs()
        textual = ort.InferenceSession(str(directory / "textual" / "model.onnx")).get_inputs()
        assert [(n.name, n.shape) for n in visual] == [("image", [1, 3, 32, 32])]
        names = ["input_ids", "attention_mask"] if style == "mclip" else ["text"]
        assert [n.name for n in textual] == names
        assert all(n.type == "tensor(int32)" and n.shape[0] == 1 for n in textual)


@pytest.mark.parametrize("style", STYLES)
def test_text_vectors_match_immich(models, style):
    encoder = load_encoder(str(models[style]))
    for lang, rows in GOLDENS[style]["texts"].items():
        lang = lang or None
        texts = [row["text"] for row in rows]
        assert texts == TEXTS
        prepared = encoder.prepare_texts(texts, lang)
        ids = encoder.tokenizer.encode(prepared).input_ids
        assert ids.tolist() == [row["ids"] for row in rows]  # the very ids immich feeds
        ours = encoder.encode_texts(texts, lang=lang)
        assert _cos(ours, [row["embedding"] for row in rows]).min() >= 0.99999


@pytest.mark.parametrize("style", STYLES)
def test_image_vectors_match_immich(models, style):
    ours = load_encoder(str(models[style])).encode_images(images())
    assert _cos(ours, GOLDENS[style]["images"]).min() >= 0.99999


def test_rules_come_from_the_config(models, tmp_path):
    siglip2, nllb, clip = (load_spec(str(models[s])) for s in ("siglip2", "nllb", "clip"))
    assert siglip2.family == "siglip" and siglip2.extra["onnx"]["clean"] == "canonicalize"
    assert siglip2.text_padding == "max_length" and siglip2.context_length == 64
    assert nllb.extra["onnx"]["language_prefix"] == "flores200" and "multi" in nllb.languages
    assert clip.family == "clip" and clip.extra["onnx"]["clean"] == "whitespace"
    # a renamed folder keeps its family and its rules: the config decides, not the name
    renamed = shutil.copytree(models["siglip2"], tmp_path / "ViT-B-32__openai")
    assert load_spec(str(renamed)).family == "siglip"
    renamed = shutil.copytree(models["nllb"], tmp_path / "my-model")
    assert load_spec(str(renamed)).extra["onnx"]["language_prefix"] == "flores200"


def test_language_codes(models, monkeypatch):
    encoder = load_encoder(str(models["nllb"]))
    zh = encoder.encode_texts(["海边的狗"], lang="zh")
    np.testing.assert_array_equal(zh, encoder.encode_texts(["海边的狗"], lang="zh-CN"))
    assert _cos(zh, encoder.encode_texts(["海边的狗"], lang="de"))[0] < 0.99999  # the token changes the vector
    assert encoder.prepare_texts(["x"], "zh_TW") == ["zho_Hantx"]
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    assert encoder.prepare_texts(["x"], None) == ["deu_Latnx"]
    monkeypatch.setenv("LANG", "C")
    monkeypatch.setattr("locale.getlocale", lambda *a: (None, None))
    with pytest.warns(UserWarning, match="read as English"):
        assert encoder.prepare_texts(["x"], None) == ["eng_Latnx"]
    with pytest.raises(UserInputError, match=r"unknown language 'klingon'; accepted codes: .*zh"):
        encoder.encode_texts(["x"], lang="klingon")
    # a model without a language token ignores a valid --lang, and still refuses a wrong one
    clip = load_encoder(str(models["clip"]))
    np.testing.assert_array_equal(clip.encode_texts(["dog"], lang="zh"), clip.encode_texts(["dog"]))
    with pytest.raises(UserInputError, match="unknown language"):
        clip.encode_texts(["dog"], lang="xx")


def test_static_batch_runs_in_pieces_on_every_core(models):
    from glimpse.encoders.onnx import OnnxEncoder

    directory = models["clip"]
    encoder = OnnxEncoder(load_spec(str(directory)), directory, batch_size=32, threads=2)
    batch = images() * 7  # 35 images: many pieces of the fixed batch 1
    vectors = encoder.encode_images(batch)
    assert vectors.shape == (35, encoder.dim)
    assert encoder._workers["visual"] == 2
    single = OnnxEncoder(load_spec(str(directory)), directory, threads=1)
    np.testing.assert_allclose(vectors[:5], single.encode_images(images()), atol=1e-6)
    assert single._workers["visual"] == 1
    texts = encoder.encode_texts(TEXTS * 6)
    assert texts.shape == (36, encoder.dim)


@pytest.mark.parametrize("style", ["clip", "nllb"])
def test_index_and_search_through_the_library(models, style, tmp_path):
    """The bug: `glimpse --model DIR index` / `search` died with onnxruntime INVALID_ARGUMENT (batch 4 vs 1)."""
    import glimpse

    photos = make_photos(tmp_path / "photos", 5)
    with glimpse.open_library(tmp_path / "lib", model=str(models[style])) as lib:
        report = lib.index([str(tmp_path / "photos")], batch_size=4)
        assert report.added == 5 and report.failed == 0
        hits = lib.search("a photo of a dog", k=3, lang="zh" if style == "nllb" else None)
        assert len(hits) == 3 and {h.path for h in hits} <= {str(p) for p in photos}
        image_hits = lib.search(str(photos[2]), k=1)
        assert image_hits[0].path == str(photos[2])


def _cli(*args: str):
    from glimpse.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_index_and_search_with_lang(models, tmp_path):
    make_photos(tmp_path / "photos", 3)
    base = ["--library", str(tmp_path / "lib"), "--model", str(models["nllb"])]
    assert _cli(*base, "index", str(tmp_path / "photos")).exit_code == 0
    result = _cli(*base, "search", "海边的狗", "--lang", "zh", "-k", "2")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 2
    wrong = _cli(*base, "search", "dog", "--lang", "klingon")
    assert wrong.exit_code != 0
    lines = [line for line in wrong.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown language 'klingon'" in lines[0] and "zh" in lines[0]


def _vector_count(directory: Path) -> int:
    """Images with vectors in the library at ``directory`` (0 when it was never created)."""
    import glimpse

    if not directory.exists():
        return 0
    with glimpse.open_library(directory) as lib:
        return len(lib.catalog.indexed_files()) if lib.catalog.models() else 0


def test_half_downloaded_folder_is_one_clear_line(models, tmp_path):
    half = shutil.copytree(models["clip"], tmp_path / "ViT-B-32__openai")
    shutil.rmtree(half / "textual")
    make_photos(tmp_path / "photos", 2)
    result = _cli("--library", str(tmp_path / "lib"), "--model", str(half), "index", str(tmp_path / "photos"))
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "textual" in lines[0], result.output
    assert "Traceback" not in result.output
    assert _vector_count(tmp_path / "lib") == 0


def test_graph_whose_inputs_match_no_family_is_one_clear_line(models, tmp_path):
    import torch

    odd = shutil.copytree(models["clip"], tmp_path / "odd")

    class Odd(torch.nn.Module):
        def forward(self, pixels: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
            return pixels.mean((2, 3)) + extra

    torch.onnx.export(Odd(), (torch.zeros(1, 3, 32, 32), torch.zeros(1, 3)), str(odd / "visual" / "model.onnx"),
                      input_names=["pixels", "extra"], output_names=["embedding"], dynamo=False)
    with pytest.raises(ModelError, match=r"image graph .* takes inputs pixels\[1, 3, 32, 32\], extra\[1, 3\]"):
        load_encoder(str(odd)).encode_images(images()[:1])
    make_photos(tmp_path / "photos", 2)
    result = _cli("--library", str(tmp_path / "lib"), "--model", str(odd), "index", str(tmp_path / "photos"))
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "image graph" in lines[0], result.output
    assert _vector_count(tmp_path / "lib") == 0
    text_odd = shutil.copytree(models["clip"], tmp_path / "odd-text")
    shutil.copy(models["clip"] / "visual" / "model.onnx", text_odd / "textual" / "model.onnx")
    with pytest.raises(GlimpseError, match=r"text graph .* takes inputs image\[1, 3, 32, 32\]"):
        load_encoder(str(text_odd)).encode_texts(["dog"])


def test_external_data_weights(models, tmp_path):
    """Large immich models keep their weights in files beside model.onnx (protobuf's 2 GiB limit)."""
    import onnx

    split = shutil.copytree(models["clip"], tmp_path / "ViT-split__openai")
    for tower in ("visual", "textual"):
        path = split / tower / "model.onnx"
        onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="model.onnx.data", size_threshold=0)
        assert (split / tower / "model.onnx.data").stat().st_size > path.stat().st_size
    encoder = load_encoder(str(split))
    assert _cos(encoder.encode_images(images()), GOLDENS["clip"]["images"]).min() >= 0.99999
    texts = GOLDENS["clip"]["texts"][""]
    assert _cos(encoder.encode_texts(TEXTS), [row["embedding"] for row in texts]).min() >= 0.99999


def test_inline_weights_load_from_a_mapped_copy(models, monkeypatch, tmp_path):
    # immich's graphs hold their weights inline; the first session writes a copy with external weights into
    # the cache (keyed by the file's hash) that later sessions memory-map. The published files stay as they are.
    from glimpse.digests import cache_dir, file_sha256
    from glimpse.encoders import mapped

    source = shutil.copytree(models["clip"], tmp_path / "m")
    graph = source / "textual" / "model.onnx"
    before = graph.read_bytes()
    plain = load_encoder(load_spec(str(source)))
    want = plain.encode_texts(TEXTS)
    plain.close()
    assert not (cache_dir() / "onnx" / file_sha256(graph) / mapped.GRAPH_NAME).exists()  # small: loaded as is

    monkeypatch.setattr(mapped, "INLINE_WEIGHTS_BYTES", 1)
    copy = cache_dir() / "onnx" / file_sha256(graph)
    shutil.rmtree(copy)  # the cut copy of the small graph (test_text_shortening.py): a big graph's starts empty
    for _ in range(2):  # writes the copy (and the cut copy from it), then loads the cut copy
        encoder = load_encoder(load_spec(str(source)))
        np.testing.assert_allclose(encoder.encode_texts(TEXTS), want, atol=1e-6)
        assert encoder._cut
        encoder.close()
        assert (copy / mapped.GRAPH_NAME).is_file() and (copy / mapped.DATA_NAME).stat().st_size > 0
        # the cut copy is only a graph: its weights are the mapped copy's data file
        assert (copy / mapped.CUT_NAME).stat().st_size < graph.stat().st_size / 4
    assert graph.read_bytes() == before
    # A copy that cannot be written (the cache folder is a file here) is no failure: the original loads.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "glimpse").write_text("not a folder")
    assert mapped.mapped_copy(graph) is None
    encoder = load_encoder(load_spec(str(source)))
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), want, atol=1e-6)
    encoder.close()


def test_a_graph_that_normalises_inside_is_fed_uint8_rgb(models, tmp_path):
    """immich's newer reader feeds ``uint8[1, S, S, 3]`` RGB to graphs that normalise inside them
    (``normalizes_input``): the same tower behind Cast/Transpose/normalise nodes gives the same vectors."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    raw = shutil.copytree(models["clip"], tmp_path / "ViT-uint8__openai")
    path = raw / "visual" / "model.onnx"
    graph_model = onnx.load(str(path))
    cfg = json.loads((raw / "visual" / "preprocess_cfg.json").read_text())
    mean = np.array(cfg["mean"], np.float32).reshape(1, 3, 1, 1)
    std = np.array(cfg["std"], np.float32).reshape(1, 3, 1, 1)
    g = graph_model.graph
    (image,) = [i for i in g.input if i.name == "image"]
    size = image.type.tensor_type.shape.dim[2].dim_value
    g.input.remove(image)
    g.input.insert(0, helper.make_tensor_value_info("rgb", TensorProto.UINT8, [1, size, size, 3]))
    g.initializer.extend([numpy_helper.from_array(np.float32(1 / 255).reshape(()), "k255"),
                          numpy_helper.from_array(mean, "mean"), numpy_helper.from_array(std, "std")])
    front = [helper.make_node("Cast", ["rgb"], ["rgb_f"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["rgb_f"], ["chw"], perm=[0, 3, 1, 2]),
             helper.make_node("Mul", ["chw", "k255"], ["unit"]),
             helper.make_node("Sub", ["unit", "mean"], ["centred"]),
             helper.make_node("Div", ["centred", "std"], ["image"])]
    for node in reversed(front):
        g.node.insert(0, node)
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(path))
    encoder = load_encoder(str(raw))
    assert encoder.session("visual").get_inputs()[0].type == "tensor(uint8)"
    assert _cos(encoder.encode_images(images()), GOLDENS["clip"]["images"]).min() >= 0.99999
