"""Dataset readers (ImageFolder, COCO, Flickr, YOLO), deterministic split and streaming channel stats."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import make_photo, shared_data
from glimpse.datasets import (
    channel_stats,
    read_coco_captions,
    read_flickr_captions,
    read_image_folder,
    read_yolo,
    split_image_folder,
)
from glimpse.errors import UserInputError


def _folder(root, per_class=(5, 3)):
    for c, n in enumerate(per_class):
        for i in range(n):
            make_photo(root / f"class_{c}" / f"img_{i}.jpg", seed=100 * c + i, size=(20, 16))
    return root


def test_image_folder_reads_classes_in_sorted_order(tmp_path):
    data = read_image_folder(_folder(tmp_path / "data"))
    assert data.classes == ["class_0", "class_1"] and data.class_names() == ["class 0", "class 1"]
    assert data.labels == [0] * 5 + [1] * 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="not an ImageFolder"):
        read_image_folder(tmp_path / "empty")


def test_split_is_deterministic_stratified_and_refuses_to_overwrite(tmp_path):
    src = _folder(tmp_path / "data", per_class=(10, 10))
    a = split_image_folder(src, tmp_path / "a", val=0.2, test=0.1, seed=3).to_dict()
    split_image_folder(src, tmp_path / "b", val=0.2, test=0.1, seed=3).to_dict()
    assert a["totals"] == {"train": 14, "val": 4, "test": 2}
    assert a["splits"]["val"] == {"class_0": 2, "class_1": 2}

    def listing(root):
        return sorted(str(p.relative_to(root)) for p in root.rglob("*.jpg"))

    assert listing(tmp_path / "a") == listing(tmp_path / "b")
    split_image_folder(src, tmp_path / "c", val=0.2, test=0.1, seed=4)
    assert listing(tmp_path / "c") != listing(tmp_path / "a")
    # Every source image lands in exactly one split.
    names = [p.split("/", 1)[1] for p in listing(tmp_path / "a")]
    assert len(names) == len(set(names)) == 20
    with pytest.raises(UserInputError, match="not empty"):
        split_image_folder(src, tmp_path / "a")
    with pytest.raises(UserInputError, match="fractions"):
        split_image_folder(src, tmp_path / "d", val=0.6, test=0.5)


def test_channel_stats_equal_the_full_array_statistics(tmp_path):
    paths = [make_photo(tmp_path / "s" / f"{i}.png", seed=i, size=(17 + i, 11 + 2 * i)) for i in range(4)]
    (tmp_path / "s" / "broken.jpg").write_bytes(b"not a jpeg")
    stats = channel_stats(tmp_path / "s")
    pixels = np.concatenate([np.asarray(Image.open(p).convert("RGB")).reshape(-1, 3) / 255.0 for p in paths])
    np.testing.assert_allclose(stats.mean, pixels.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(stats.std, pixels.std(axis=0), rtol=1e-9)
    assert stats.images == 4 and stats.pixels == len(pixels)
    assert [f["path"].endswith("broken.jpg") for f in stats.failed] == [True]


def test_coco_captions_and_missing_image(tmp_path):
    make_photo(tmp_path / "a.jpg", seed=1)
    make_photo(tmp_path / "b.jpg", seed=2)
    coco = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
            "annotations": [{"image_id": 2, "caption": " a dog "}, {"image_id": 1, "caption": "a cat"},
                            {"image_id": 2, "caption": "a puppy"}]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    data = read_coco_captions(tmp_path / "c.json")
    assert [p.rsplit("/", 1)[1] for p in data.paths] == ["a.jpg", "b.jpg"]
    assert data.captions == [["a cat"], ["a dog", "a puppy"]]
    assert len(data.pairs()) == 3
    coco["images"][1]["file_name"] = "missing.jpg"
    (tmp_path / "c.json").write_text(json.dumps(coco))
    with pytest.raises(UserInputError, match="does not exist"):
        read_coco_captions(tmp_path / "c.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UserInputError, match="not a COCO captions file"):
        read_coco_captions(tmp_path / "bad.json")


def test_flickr_captions(tmp_path):
    make_photo(tmp_path / "img" / "1000.jpg", seed=1)
    make_photo(tmp_path / "img" / "2000.jpg", seed=2)
    (tmp_path / "tokens.txt").write_text("1000.jpg#0\tA child in pink.\n1000.jpg#1\tA girl.\n\n2000.jpg#0\tA dog.\n")
    data = read_flickr_captions(tmp_path / "tokens.txt", tmp_path / "img")
    assert data.captions == [["A child in pink.", "A girl."], ["A dog."]]
    (tmp_path / "kaggle.txt").write_text("image,caption\n2000.jpg,A dog runs, fast.\n")
    assert read_flickr_captions(tmp_path / "kaggle.txt", tmp_path / "img").captions == [["A dog runs, fast."]]
    (tmp_path / "bad.txt").write_text("1000.jpg#0\n")
    with pytest.raises(UserInputError, match=r"bad\.txt:1"):
        read_flickr_captions(tmp_path / "bad.txt", tmp_path / "img")


def test_yolo_multi_label_synthetic(tmp_path):
    make_photo(tmp_path / "images" / "a.jpg", seed=1)
    make_photo(tmp_path / "images" / "b.jpg", seed=2)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("2 0.5 0.5 0.1 0.1\n0 0.2 0.2 0.1 0.1\n2 0.1 0.1 0.1 0.1\n")
    (tmp_path / "classes.yaml").write_text("names:\n  0: person\n  1: bicycle\n  2: car\n")
    data = read_yolo(tmp_path / "images", tmp_path / "labels", tmp_path / "classes.yaml")
    assert data.classes == ["person", "bicycle", "car"]
    assert data.targets.tolist() == [[True, False, True], [False, False, False]]
    (tmp_path / "labels" / "b.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(UserInputError, match=r"outside 0\.\.2"):
        read_yolo(tmp_path / "images", tmp_path / "labels", tmp_path / "classes.yaml")


def test_yolo_on_coco128():
    root = shared_data("coco128")
    data = read_yolo(root / "images", root / "labels", root / "classes.yaml")
    assert len(data.classes) == 80 and data.classes[0] == "person"
    assert len(data.paths) == 128
    # Cross-check one label file by hand.
    first = root / "labels" / (data.paths[0].rsplit("/", 1)[1].rsplit(".", 1)[0] + ".txt")
    if first.is_file():
        ids = {int(line.split()[0]) for line in first.read_text().splitlines() if line.strip()}
        assert set(np.flatnonzero(data.targets[0]).tolist()) == ids


def test_dataset_cli_split_and_stats(tmp_path):
    from typer.testing import CliRunner

    from glimpse.cli import app

    src = _folder(tmp_path / "raw", per_class=(10, 10))
    runner = CliRunner()
    result = runner.invoke(app, ["dataset", "split", str(src), str(tmp_path / "out"), "--val", "0.1", "--test",
                                 "0.1", "--seed", "0", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["totals"] == {"train": 16, "val": 2, "test": 2}
    result = runner.invoke(app, ["dataset", "stats", str(src), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["images"] == 20 and len(stats["mean"]) == 3 and all(0 < s < 0.5 for s in stats["std"])
    result = runner.invoke(app, ["dataset", "stats", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "not a folder" in result.stderr
