"""Helpers shared by the torch-free tests (and benchmarks/cold_search.py): run the CLI in a subprocess with
torch and transformers unimportable, and rewrite a `glimpse export` graph into immich's input names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

RUN_CLI_WITHOUT_TORCH = textwrap.dedent("""
    import importlib.abc, json, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        # The core install (`pip install -e .`, no torch extra): importing torch/transformers fails.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "transformers"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, NoTorch())
    sys.argv = ["glimpse"] + json.loads(sys.argv[1])
    from glimpse.cli import run
    code = 0
    try:
        run()
    except SystemExit as exc:
        code = exc.code or 0
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
    sys.stderr.write("\\nRESULT " + json.dumps({"code": code, "heavy": heavy}) + "\\n")
""")


def cli_without_torch(args: list[str], env: dict[str, str] | None = None) -> tuple[dict, str]:
    """Run ``glimpse ARGS`` with torch/transformers blocked: ``({"code", "heavy"}, stdout)``; ``heavy`` lists
    the torch/transformers modules that got imported anyway."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"} if env is None else env
    proc = subprocess.run([sys.executable, "-c", RUN_CLI_WITHOUT_TORCH, json.dumps(args)], capture_output=True,
                          text=True, env=env)
    line = [x for x in proc.stderr.splitlines() if x.startswith("RESULT ")]
    assert line, proc.stderr
    return json.loads(line[-1][7:]), proc.stdout


def rename_inputs(src: Path, dst: Path, renames: dict[str, str]) -> None:
    """``src`` with its graph inputs renamed, saved to ``dst`` with its weights inside the graph (as immich's
    B/32 files are; external data is loaded and inlined)."""
    import onnx

    model = onnx.load(str(src))
    for value in model.graph.input:
        value.name = renames.get(value.name, value.name)
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))


def immich_layout(exported: Path, directory: Path, *, model_cfg: dict[str, Any] | None = None) -> Path:
    """``exported`` (a `glimpse export` directory) rewritten in immich's layout into ``directory``: an open_clip
    ``config.json`` (``model_cfg``, default: just the dims glimpse reads), ``visual/model.onnx`` (input
    ``image``) + ``preprocess_cfg.json``, ``textual/model.onnx`` (input ``text``) + tokenizer files."""
    from glimpse.registry import load_spec

    spec = load_spec(str(exported))
    pre = spec.preprocess
    rename_inputs(exported / "visual.onnx", directory / "visual" / "model.onnx", {"pixel_values": "image"})
    rename_inputs(exported / "textual.onnx", directory / "textual" / "model.onnx", {"input_ids": "text"})
    shutil.copyfile(exported / "tokenizer.json", directory / "textual" / "tokenizer.json")
    (directory / "textual" / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<|endoftext|>"}))
    (directory / "visual" / "preprocess_cfg.json").write_text(json.dumps(
        {"size": [pre.height, pre.width], "mode": "RGB", "mean": list(pre.mean), "std": list(pre.std),
         "interpolation": "bicubic", "resize_mode": "shortest"}))
    cfg = model_cfg or {"embed_dim": spec.dim, "vision_cfg": {"image_size": pre.height},
                        "text_cfg": {"context_length": 77}}
    (directory / "config.json").write_text(json.dumps(cfg))
    return directory
