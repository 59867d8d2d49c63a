"""Zero-shot classification (templates, cache, calibration, stored embeddings) and few-shot probes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from conftest import make_photo, make_photos
from glimpse.encoders.base import l2_normalize
from glimpse.errors import IndexMismatchError, UserInputError
from glimpse.probe import Probe, train_linear, train_probe, train_prototype
from glimpse.templates import fill, load_templates, template_names
from glimpse.zeroshot import Calibration, TextCache, ZeroShotClassifier, parse_labels, text_cache_for, top_k


def test_builtin_templates():
    openai = load_templates("openai")
    assert len(openai) == 80 and len(set(openai)) == 80
    assert "a photo of a {}." in openai and "itap of my {}." in openai
    assert {"openai", "short", "photo"} <= set(template_names())
    assert load_templates() == load_templates("short")
    assert fill(["a {} here", "{}"], "cat {x}") == ["a cat {x} here", "cat {x}"]


def test_templates_file_and_errors(tmp_path):
    good = tmp_path / "t.txt"
    good.write_text("# comment\nan image of {}\n\na {} again\n")
    assert load_templates(str(good)) == ["an image of {}", "a {} again"]
    bad = tmp_path / "bad.txt"
    bad.write_text("no placeholder\n")
    with pytest.raises(UserInputError, match="exactly one"):
        load_templates(str(bad))
    with pytest.raises(UserInputError, match="neither a built-in set"):
        load_templates("nonexistent-set")


def test_parse_labels(tmp_path):
    assert parse_labels("cat, dog,,bird") == ["cat", "dog", "bird"]
    f = tmp_path / "labels.txt"
    f.write_text("猫\n# c\n狗\n")
    assert parse_labels(labels_file=f) == ["猫", "狗"]
    with pytest.raises(UserInputError, match="at least 2"):
        parse_labels("cat")
    with pytest.raises(UserInputError, match="distinct"):
        parse_labels("cat,cat")
    with pytest.raises(UserInputError, match="exactly one"):
        parse_labels("a,b", f)


def test_calibration_softmax_and_sigmoid_hand_computed():
    cosine = np.array([[0.3, 0.1]], dtype=np.float32)
    p = Calibration(100.0, None, False).probabilities(cosine)
    # softmax(30, 10) = 1 / (1 + e^-20)
    assert p[0, 0] == pytest.approx(1 / (1 + math.exp(-20)), rel=1e-6) and p.sum() == pytest.approx(1.0)
    s = Calibration(10.0, -2.0, True).probabilities(cosine)
    np.testing.assert_allclose(s[0], [1 / (1 + math.exp(-1.0)), 1 / (1 + math.exp(1.0))], rtol=1e-6)


def test_top_k_orders_and_clips():
    out = top_k(np.array([[0.1, 0.7, 0.2]]), ["a", "b", "c"], 5)
    assert [x["label"] for x in out[0]] == ["b", "c", "a"]
    with pytest.raises(UserInputError):
        top_k(np.array([[0.1]]), ["a"], 0)


def test_classifier_is_the_prompt_ensemble_and_the_cache_avoids_re_encoding(tmp_path, open_lib):
    lib = open_lib()
    encoder = lib.encoder
    templates = ["a photo of a {}.", "a drawing of a {}."]
    cache = text_cache_for(tmp_path / "libdir", encoder.key)
    clf = ZeroShotClassifier.build(encoder, ["cat", "dog"], templates, cache)
    assert encoder.texts_encoded == 4
    # Class embedding = renormalised mean of its prompt embeddings.
    prompts = encoder.encode_texts(["a photo of a cat.", "a drawing of a cat."])
    np.testing.assert_allclose(clf.weights[0], l2_normalize(prompts.mean(0, keepdims=True))[0], atol=1e-6)
    # A new cache object reads the file: nothing is encoded again.
    before = encoder.texts_encoded
    again = ZeroShotClassifier.build(encoder, ["cat", "dog"], templates, text_cache_for(tmp_path / "libdir",
                                                                                         encoder.key))
    assert encoder.texts_encoded == before
    np.testing.assert_array_equal(again.weights, clf.weights)
    # Probabilities use the model's own logit scale.
    image = encoder.encode_images([Image.new("RGB", (32, 32), (200, 30, 30))])
    expected = Calibration(lib.spec.logit_scale, None, False).probabilities(image @ clf.weights.T)
    np.testing.assert_allclose(clf.probabilities(image), expected, rtol=1e-6)
    assert lib.spec.logit_scale == pytest.approx(math.exp(2.6592), rel=1e-4)


def test_text_cache_survives_a_damaged_file(tmp_path, open_lib):
    encoder = open_lib().encoder
    path = tmp_path / "cache"
    path.mkdir()
    (path / f"{encoder.key}.npz").write_bytes(b"garbage")
    vectors = TextCache(path, encoder.key).encode(encoder, ["a", "b"])
    assert vectors.shape == (2, encoder.dim)
    assert TextCache(path, encoder.key).encode(encoder, ["a"]).shape == (1, encoder.dim)


def test_classify_uses_stored_embeddings_without_re_encoding(tmp_path, open_lib):
    from glimpse.images import open_image

    photos = make_photos(tmp_path / "photos", 4)
    lib = open_lib()
    lib.index([tmp_path / "photos"])
    fresh = lib.encoder.encode_images([open_image(p, min_side=lib.spec.preprocess.min_side).image for p in photos])
    lib2 = open_lib()  # a new process would start like this: nothing encoded yet
    found = lib2.vectors([tmp_path / "photos"])
    assert found.stored == 4 and found.encoded == 0 and "encoder" not in lib2.__dict__
    whole = lib2.vectors()
    assert sorted(whole.paths) == sorted(found.paths)
    np.testing.assert_allclose(found.vectors, fresh, atol=1e-5)
    # A changed file is encoded again instead of using its stale vector.
    make_photo(photos[0], seed=99)
    found = lib2.vectors([tmp_path / "photos"])
    assert found.stored == 3 and found.encoded == 1


def test_classify_cli_labels_templates_and_errors(tmp_path, tiny_clip):
    from typer.testing import CliRunner

    from glimpse.cli import app

    make_photos(tmp_path / "photos", 3)
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"nope")
    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n")
    base = ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip)]
    runner = CliRunner()
    result = runner.invoke(app, [*base, "classify", str(tmp_path / "photos"), "--labels", "cat,dog,bird,car",
                                 "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 3 and "broken.jpg" in result.stderr
    for row in rows:
        assert row["label"] == row["top"][0]["label"] and len(row["top"]) == 3
        scores = [t["score"] for t in row["top"]]
        assert scores == sorted(scores, reverse=True)
    result = runner.invoke(app, [*base, "classify", str(tmp_path / "photos"), "--labels-file",
                                 str(tmp_path / "labels.txt"), "--templates", "openai", "--top", "3", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert all(sum(t["score"] for t in r["top"]) == pytest.approx(1.0, abs=1e-4) for r in rows)
    result = runner.invoke(app, [*base, "classify", str(tmp_path / "photos"), "--labels", "cat"])
    assert result.exit_code == 1 and "at least 2 labels" in result.stderr
    result = runner.invoke(app, [*base, "classify", str(tmp_path / "nope"), "--labels", "a,b"])
    assert result.exit_code == 1 and "does not exist" in result.stderr


def test_multilingual_labels_with_chinese_clip(tmp_path):
    import glimpse
    from tiny_models import make_tiny_chinese_clip

    model = make_tiny_chinese_clip(tmp_path / "cn")
    with glimpse.open_library(tmp_path / "lib", model=str(model)) as lib:
        clf = ZeroShotClassifier.build(lib.encoder, ["猫", "狗", "汽车"], ["一张{}的照片"])
        # Distinct Chinese labels reach the model as distinct tokens (not one unknown token), so each
        # prompt's own embedding is classified as its label.
        queries = lib.encoder.encode_texts(["一张猫的照片", "一张狗的照片", "一张汽车的照片"])
        assert clf.probabilities(queries).argmax(1).tolist() == [0, 1, 2]
        assert len({tuple(row) for row in clf.weights.round(6)}) == 3


# -- probes -------------------------------------------------------------------------------------------
def _clusters(seed=0, n=20, d=8):
    centers = l2_normalize(np.random.default_rng(123).normal(size=(3, d)))
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n)
    vectors = l2_normalize(centers[labels] + 0.15 * rng.normal(size=(3 * n, d)))
    return vectors, labels


def test_prototype_probe_is_cosine_to_class_means():
    vectors = l2_normalize(np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32))
    probe = train_prototype(vectors, np.array([0, 0, 1, 1]), ["a", "b"], "key")
    means = l2_normalize(np.array([vectors[:2].mean(0), vectors[2:].mean(0)]))
    np.testing.assert_allclose(probe.weights, means * 100, rtol=1e-5)
    assert probe.probabilities(np.array([[1.0, 0.0]], dtype=np.float32)).argmax() == 0


def test_linear_probe_fits_separable_clusters_and_round_trips(tmp_path):
    vectors, labels = _clusters()
    probe = train_linear(vectors, labels, ["x", "y", "z"], "model-key-1", "tiny")
    assert (probe.probabilities(vectors).argmax(1) == labels).mean() == 1.0
    test_vectors, test_labels = _clusters(seed=1)
    assert (probe.probabilities(test_vectors).argmax(1) == test_labels).mean() > 0.9
    path = probe.save(tmp_path / "p.glimpse")
    assert path.name == "p.glimpse"
    loaded = Probe.load(path)
    assert loaded.labels == ["x", "y", "z"] and loaded.kind == "linear"
    np.testing.assert_array_equal(loaded.weights, probe.weights)
    loaded.check_model("model-key-1")
    with pytest.raises(IndexMismatchError, match="model-key-1"):
        loaded.check_model("other-key")
    (tmp_path / "junk.glimpse").write_text("junk")
    with pytest.raises(UserInputError, match="not a glimpse probe"):
        Probe.load(tmp_path / "junk.glimpse")
    with pytest.raises(UserInputError, match="at least 2 classes"):
        train_probe(vectors[:5], np.zeros(5, dtype=int), ["x", "y"], "k")


def test_probe_cli_train_then_classify_and_model_mismatch(tmp_path, tiny_clip, tiny_clip_b):
    from typer.testing import CliRunner

    from glimpse.cli import app

    for c, name in enumerate(["one", "two"]):
        for i in range(3):
            make_photo(tmp_path / "data" / name / f"{i}.png", seed=50 * c + i)
    runner = CliRunner()
    base = ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip)]
    result = runner.invoke(app, [*base, "train", "probe", str(tmp_path / "data"), str(tmp_path / "p.glimpse"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images"] == 6 and summary["classes"] == ["one", "two"] and summary["train_top1"] == 1.0
    result = runner.invoke(app, [*base, "classify", str(tmp_path / "data" / "two"), "--probe",
                                 str(tmp_path / "p.glimpse"), "--json"])
    assert result.exit_code == 0, result.output
    assert [r["label"] for r in json.loads(result.stdout)] == ["two"] * 3
    other = ["--library", str(tmp_path / "lib2"), "--model", str(tiny_clip_b)]
    result = runner.invoke(app, [*other, "classify", str(tmp_path / "data"), "--probe", str(tmp_path / "p.glimpse")])
    assert result.exit_code == 1 and "train a new probe" in result.stderr
