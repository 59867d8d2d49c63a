"""Edge bundle: everything a device needs to run text -> image search with onnxruntime, numpy and Pillow.

``write_bundle(model_dir, out)`` writes::

    image_encoder.onnx   float32[n, 3, H, W] -> float32[n, d]   (the export's visual.onnx)
    text_encoder.onnx    int64[n, seq] ids (+ mask)               (the export's textual.onnx)
    tokenizer.json       the model tokenizer (used by run.py when the ``tokenizers`` package is there)
    feature_matmul.onnx  query float32[q, d], gallery float32[n, d] (rows L2-normalised), k int64[1]
                         -> scores float32[q, k], indices int64[q, k]   (query normalised in the graph)
    texts.txt            sample queries, one per line
    texts_ids.json       their token ids, so the samples run without any tokenizer library
    config.json          preprocessing, context length, padding, pad id, input names
    run.py               standalone runner (index a folder, search by text) — onnxruntime, numpy, Pillow

The runner is generated from :data:`RUNNER` (its own code, no glimpse import) so it runs on a board with
nothing else installed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from glimpse.errors import UserInputError

SAMPLE_TEXTS = ("a photo of a dog", "a photo of a cat", "a red car", "a beach at sunset", "一只猫", "城市的夜晚")


def feature_matmul_model() -> object:
    """The ONNX graph ``normalise(query) @ gallery.T -> TopK(k)`` (opset 17, dynamic q, n, d)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("LpNormalization", ["query"], ["query_n"], axis=1, p=2),
        helper.make_node("Transpose", ["gallery"], ["gallery_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["query_n", "gallery_t"], ["all_scores"]),
        helper.make_node("TopK", ["all_scores", "k"], ["scores", "indices"], axis=1, largest=1, sorted=1),
    ]
    graph = helper.make_graph(
        nodes,
        "feature_matmul",
        [helper.make_tensor_value_info("query", TensorProto.FLOAT, ["q", "d"]),
         helper.make_tensor_value_info("gallery", TensorProto.FLOAT, ["n", "d"]),
         helper.make_tensor_value_info("k", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["q", "top"]),
         helper.make_tensor_value_info("indices", TensorProto.INT64, ["q", "top"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="glimpse")
    model.ir_version = 8  # readable by onnxruntime builds back to 1.10 (older edge runtimes)
    onnx.checker.check_model(model)
    return model


def _self_contained(src: Path, dst: Path) -> None:
    """Copy the graph ``src`` (weights inline or in external data) to one file ``dst``, as NPU converters
    and edge runtimes expect; only a graph past protobuf's 2 GB limit keeps its weights in ``<dst>.data``."""
    import onnx

    model = onnx.load(str(src))
    if sum(len(t.raw_data) for t in model.graph.initializer) < 2**31 - 2**24:
        onnx.save(model, str(dst))
    else:
        onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=dst.name + ".data")


def write_bundle(model_dir: str | Path, out: str | Path, texts: tuple[str, ...] = SAMPLE_TEXTS) -> Path:
    """Write the edge bundle of the ONNX model in ``model_dir`` (a ``glimpse export`` output) into ``out``."""
    import onnx

    from glimpse.encoders.onnx import onnx_files
    from glimpse.registry import load_spec
    from glimpse.tokenizer import TextTokenizer

    spec = load_spec(str(model_dir))
    if spec.runtime != "onnx":
        raise UserInputError(f"{model_dir} is not an ONNX model; run `glimpse export MODEL OUT --bundle`")
    files = onnx_files(spec, spec.source)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _self_contained(files["visual"], out / "image_encoder.onnx")
    _self_contained(files["textual"], out / "text_encoder.onnx")
    shutil.copy2(files["tokenizer"], out / "tokenizer.json")
    onnx.save(feature_matmul_model(), str(out / "feature_matmul.onnx"))
    info = spec.extra.get("onnx", {})
    tokenizer = TextTokenizer(files["tokenizer"], context_length=spec.context_length, padding=spec.text_padding,
                              pad_id=info.get("pad_id"), pad_token=info.get("pad_token"))
    (out / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    ids = {text: tokenizer.ids(text) for text in texts}
    (out / "texts_ids.json").write_text(json.dumps(ids, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    pre = spec.preprocess
    config = {
        "model": spec.name, "key": spec.key, "dim": spec.dim, "context_length": spec.context_length,
        "padding": spec.text_padding, "pad_id": tokenizer.pad_id,
        "text_inputs": info.get("text_inputs", ["input_ids", "attention_mask"]),
        "preprocess": {"height": pre.height, "width": pre.width, "resize": pre.resize,
                       "shortest_edge": pre.shortest_edge, "interpolation": pre.interpolation,
                       "mean": list(pre.mean), "std": list(pre.std), "rescale": pre.rescale},
    }
    (out / "config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "run.py").write_text(RUNNER, encoding="utf-8")
    return out


RUNNER = r'''#!/usr/bin/env python3
"""Standalone glimpse edge runner: needs onnxruntime, numpy and Pillow only.

    python run.py index PHOTOS_DIR          # writes gallery.npy + gallery.txt next to this script
    python run.py search "a photo of a dog" [-k 5]

Queries listed in texts.txt run from their stored ids (texts_ids.json); any other text needs the
``tokenizers`` package (pip install tokenizers) to read tokenizer.json.
"""
import argparse
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
CFG = json.load(open(os.path.join(HERE, "config.json"), encoding="utf-8"))
RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


def session(name):
    return ort.InferenceSession(os.path.join(HERE, name), providers=["CPUExecutionProvider"])


def pixels(path):
    p = CFG["preprocess"]
    im = Image.open(path)
    im.draft("RGB", (p["width"], p["height"]))
    im = im.convert("RGB")
    w, h = im.size
    if p["resize"] == "squash":
        size = (p["width"], p["height"])
    else:
        s = p["shortest_edge"] or min(p["height"], p["width"])
        size = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
    im = im.resize(size, resample=RESAMPLE[p["interpolation"]])
    a = np.asarray(im, dtype=np.float32) * p["rescale"]
    if p["resize"] != "squash":
        top, left = (a.shape[0] - p["height"]) // 2, (a.shape[1] - p["width"]) // 2
        a = a[max(top, 0):max(top, 0) + p["height"], max(left, 0):max(left, 0) + p["width"]]
        a = np.pad(a, ((0, p["height"] - a.shape[0]), (0, p["width"] - a.shape[1]), (0, 0)))
    a = (a - np.array(p["mean"], np.float32)) / np.array(p["std"], np.float32)
    return a.transpose(2, 0, 1)


def normalise(v):
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def token_ids(text):
    stored = json.load(open(os.path.join(HERE, "texts_ids.json"), encoding="utf-8"))
    if text in stored:
        return stored[text]
    try:
        from tokenizers import Tokenizer
    except ImportError:
        sys.exit(f"{text!r} is not in texts.txt; install the tokenizers package to search any text")
    tok = Tokenizer.from_file(os.path.join(HERE, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(CFG["context_length"])
    return tok.encode(text).ids


def encode_text(text):
    ids = token_ids(text)
    length = CFG["context_length"] if CFG["padding"] == "max_length" else len(ids)
    row = np.full((1, length), CFG["pad_id"], np.int64)
    row[0, :len(ids)] = ids
    mask = np.zeros_like(row)
    mask[0, :len(ids)] = 1
    sess = session("text_encoder.onnx")
    feeds = {}
    for node in sess.get_inputs():
        feeds[node.name] = mask if node.name == "attention_mask" else row
    return normalise(sess.run(None, feeds)[0].astype(np.float32))


def index(folder):
    paths = sorted(os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs
                   if f.lower().endswith((".jpg", ".jpeg", ".png", ".webp", ".bmp")))
    sess = session("image_encoder.onnx")
    name = sess.get_inputs()[0].name
    vectors = []
    for i in range(0, len(paths), 16):
        batch = np.stack([pixels(p) for p in paths[i:i + 16]]).astype(np.float32)
        vectors.append(sess.run(None, {name: batch})[0])
    gallery = normalise(np.concatenate(vectors).astype(np.float32))
    np.save(os.path.join(HERE, "gallery.npy"), gallery)
    open(os.path.join(HERE, "gallery.txt"), "w", encoding="utf-8").write("\n".join(paths) + "\n")
    print(f"indexed {len(paths)} images")


def search(text, k):
    gallery = np.load(os.path.join(HERE, "gallery.npy"))
    paths = open(os.path.join(HERE, "gallery.txt"), encoding="utf-8").read().splitlines()
    k = np.array([min(k, len(paths))], np.int64)
    scores, indices = session("feature_matmul.onnx").run(None, {"query": encode_text(text), "gallery": gallery, "k": k})
    for score, i in zip(scores[0], indices[0]):
        print(f"{score:.4f}  {paths[i]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("index").add_argument("folder")
    s = sub.add_parser("search")
    s.add_argument("text")
    s.add_argument("-k", type=int, default=5)
    args = parser.parse_args()
    index(args.folder) if args.cmd == "index" else search(args.text, args.k)


if __name__ == "__main__":
    main()
'''
