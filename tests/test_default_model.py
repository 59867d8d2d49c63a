"""The default model is torch-free: with no --model, `index` and `search` resolve the default (an immich-layout
ONNX repo) from the Hugging Face cache and run with torch and transformers unimportable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import make_photos
from glimpse.registry import DEFAULT_MODEL, load_spec

COMMIT = "fedcba9876543210fedcba9876543210fedcba98"

_RUN_CLI = textwrap.dedent("""
    import importlib.abc, json, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        # The core install (`pip install -e .`, no torch extra): importing torch/transformers fails.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "transformers"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, NoTorch())
    sys.argv = ["glimpse"] + json.loads(sys.argv[1])
    from glimpse.cli import main
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
    sys.stderr.write("\\nRESULT " + json.dumps({"code": code, "heavy": heavy}) + "\\n")
""")


def _rename_inputs(src: Path, dst: Path, renames: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(src))
    for value in model.graph.input:
        value.name = renames.get(value.name, value.name)
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))


def immich_layout(tiny_clip: Path, exported: Path, directory: Path) -> Path:
    """``exported`` (a `glimpse export` of ``tiny_clip``) rewritten in immich's layout: open_clip config.json,
    visual/model.onnx (input ``image``) + preprocess_cfg.json, textual/model.onnx (input ``text``) + tokenizer."""
    _rename_inputs(exported / "visual.onnx", directory / "visual" / "model.onnx", {"pixel_values": "image"})
    _rename_inputs(exported / "textual.onnx", directory / "textual" / "model.onnx", {"input_ids": "text"})
    shutil.copyfile(exported / "tokenizer.json", directory / "textual" / "tokenizer.json")
    (directory / "textual" / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<|endoftext|>"}))
    source = load_spec(str(tiny_clip))
    pre = source.preprocess
    (directory / "visual" / "preprocess_cfg.json").write_text(json.dumps(
        {"size": [pre.height, pre.width], "mode": "RGB", "mean": list(pre.mean), "std": list(pre.std),
         "interpolation": "bicubic", "resize_mode": "shortest"}))
    (directory / "config.json").write_text(json.dumps(
        {"embed_dim": source.dim, "vision_cfg": {"image_size": pre.height}, "text_cfg": {"context_length": 77}}))
    return directory


@pytest.fixture(scope="module")
def default_in_cache(tiny_clip, tmp_path_factory) -> Path:
    """A Hugging Face cache whose copy of the default repo is a tiny random CLIP in immich's layout."""
    from glimpse.encoders.export import export_model

    work = tmp_path_factory.mktemp("default-model")
    exported = export_model(str(tiny_clip), work / "export").directory
    cache = work / "hub"
    repo = cache / ("models--" + DEFAULT_MODEL.replace("/", "--"))
    immich_layout(tiny_clip, exported, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


def _cli(args: list[str], env: dict[str, str]) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-c", _RUN_CLI, json.dumps(args)], capture_output=True, text=True, env=env)
    line = [x for x in proc.stderr.splitlines() if x.startswith("RESULT ")]
    assert line, proc.stderr
    return json.loads(line[-1][7:]), proc.stdout


def test_default_model_indexes_and_searches_without_torch(default_in_cache, tmp_path):
    assert DEFAULT_MODEL == "immich-app/ViT-B-32__openai"
    make_photos(tmp_path / "photos", 4)
    env = {k: v for k, v in os.environ.items() if k not in ("GLIMPSE_MODEL", "HF_HOME")}
    env.update(HF_HUB_CACHE=str(default_in_cache), HF_HUB_OFFLINE="1", GLIMPSE_LIBRARY=str(tmp_path / "lib"))
    result, stdout = _cli(["index", str(tmp_path / "photos"), "--json"], env)
    assert result == {"code": 0, "heavy": []}, stdout
    assert json.loads(stdout)["encoded"] == 4
    result, stdout = _cli(["search", "a photo of a dog", "-k", "2", "--json"], env)
    assert result == {"code": 0, "heavy": []}
    hits = json.loads(stdout)
    assert len(hits) == 2 and hits[0]["score"] >= hits[1]["score"]
    photo = str((tmp_path / "photos" / "img_001.jpg").resolve())
    result, stdout = _cli(["search", "", "--image", photo, "-k", "1", "--json"], env)
    assert result["code"] == 0 and json.loads(stdout)[0]["path"] == photo
    result, stdout = _cli(["status", "--json"], env)
    assert result["code"] == 0 and DEFAULT_MODEL in stdout  # the library was built with the default
