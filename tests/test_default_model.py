"""The default model is torch-free: with no --model, `index` and `search` resolve the default (an immich-layout
ONNX repo) from the Hugging Face cache and run with torch and transformers unimportable."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import make_photos
from glimpse.registry import DEFAULT_MODEL
from torchless import cli_without_torch, immich_layout

COMMIT = "fedcba9876543210fedcba9876543210fedcba98"

@pytest.fixture(scope="module")
def default_in_cache(tiny_clip, tmp_path_factory) -> Path:
    """A Hugging Face cache whose copy of the default repo is a tiny random CLIP in immich's layout."""
    from glimpse.encoders.export import export_model

    work = tmp_path_factory.mktemp("default-model")
    exported = export_model(str(tiny_clip), work / "export").directory
    cache = work / "hub"
    repo = cache / ("models--" + DEFAULT_MODEL.replace("/", "--"))
    immich_layout(exported, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


def test_default_model_indexes_and_searches_without_torch(default_in_cache, tmp_path):
    assert DEFAULT_MODEL == "immich-app/ViT-B-32__openai"
    make_photos(tmp_path / "photos", 4)
    env = {k: v for k, v in os.environ.items() if k not in ("GLIMPSE_MODEL", "HF_HOME")}
    env.update(HF_HUB_CACHE=str(default_in_cache), HF_HUB_OFFLINE="1", GLIMPSE_LIBRARY=str(tmp_path / "lib"))
    result, stdout = cli_without_torch(["index", str(tmp_path / "photos"), "--json"], env)
    assert result == {"code": 0, "heavy": []}, stdout
    assert json.loads(stdout)["encoded"] == 4
    result, stdout = cli_without_torch(["search", "a photo of a dog", "-k", "2", "--json"], env)
    assert result == {"code": 0, "heavy": []}
    hits = json.loads(stdout)
    assert len(hits) == 2 and hits[0]["score"] >= hits[1]["score"]
    photo = str((tmp_path / "photos" / "img_001.jpg").resolve())
    result, stdout = cli_without_torch(["search", "", "--image", photo, "-k", "1", "--json"], env)
    assert result["code"] == 0 and json.loads(stdout)[0]["path"] == photo
    result, stdout = cli_without_torch(["status", "--json"], env)
    assert result["code"] == 0 and DEFAULT_MODEL in stdout  # the library was built with the default
