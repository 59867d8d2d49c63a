#!/usr/bin/env python3
"""Standalone glimpse edge runner: needs onnxruntime, numpy and Pillow only.

    python run.py index PHOTOS_DIR          # writes gallery.npy + gallery.txt next to this script
    python run.py search "a photo of a dog" [-k 5]

Queries listed in texts.txt run from their stored ids (texts_ids.json); any other text needs the
``tokenizers`` package (pip install tokenizers) to read tokenizer.json.
"""

# This file is copied into every edge bundle as run.py (glimpse.bundle.write_bundle). It runs on a board
# with nothing but onnxruntime, numpy and Pillow: it never imports glimpse, and it keeps to Python 3.8
# (no zip(strict=), no match). It reads the bundle next to it, so importing it does nothing.
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
BATCH = 16


def read_json(name: str) -> Any:
    with open(os.path.join(HERE, name), encoding="utf-8") as handle:
        return json.load(handle)


def session(name: str) -> ort.InferenceSession:
    return ort.InferenceSession(os.path.join(HERE, name), providers=["CPUExecutionProvider"])


def pixels(path: str, p: dict[str, Any]) -> np.ndarray:
    """float32[3, H, W]: the image at ``path`` preprocessed as config.json's ``preprocess`` says."""
    im = Image.open(path)
    im.draft("RGB", (p["width"], p["height"]))  # JPEG: decode at reduced scale, as the indexer does
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


def normalise(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def token_ids(text: str, cfg: dict[str, Any]) -> list[int]:
    """The stored ids of a sample query, else the ``tokenizers`` package's encoding of tokenizer.json."""
    stored = read_json("texts_ids.json")
    if text in stored:
        return list(stored[text])
    try:
        from tokenizers import Tokenizer
    except ImportError:
        sys.exit(f"{text!r} is not in texts.txt; install the tokenizers package to search any text")
    tok = Tokenizer.from_file(os.path.join(HERE, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(cfg["context_length"])
    return list(tok.encode(text).ids)


def encode_text(text: str, cfg: dict[str, Any]) -> np.ndarray:
    """float32[1, d], L2-normalised."""
    ids = token_ids(text, cfg)
    length = cfg["context_length"] if cfg["padding"] == "max_length" else len(ids)
    row = np.full((1, length), cfg["pad_id"], np.int64)
    row[0, :len(ids)] = ids
    mask = np.zeros_like(row)
    mask[0, :len(ids)] = 1
    sess = session("text_encoder.onnx")
    feeds = {node.name: mask if node.name == "attention_mask" else row for node in sess.get_inputs()}
    return normalise(sess.run(None, feeds)[0].astype(np.float32))


def index(folder: str, cfg: dict[str, Any]) -> None:
    """Encode every image under ``folder`` into gallery.npy (float32[n, d]) and gallery.txt (n paths)."""
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                   if name.lower().endswith(IMAGE_SUFFIXES))
    sess = session("image_encoder.onnx")
    name = sess.get_inputs()[0].name
    vectors = []
    for i in range(0, len(paths), BATCH):
        batch = np.stack([pixels(p, cfg["preprocess"]) for p in paths[i:i + BATCH]]).astype(np.float32)
        vectors.append(sess.run(None, {name: batch})[0])
    gallery = normalise(np.concatenate(vectors).astype(np.float32))
    np.save(os.path.join(HERE, "gallery.npy"), gallery)
    with open(os.path.join(HERE, "gallery.txt"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(paths) + "\n")
    print(f"indexed {len(paths)} images")


def search(text: str, k: int, cfg: dict[str, Any]) -> None:
    """Print the ``k`` gallery images best matching ``text`` as ``score  path`` lines."""
    gallery = np.load(os.path.join(HERE, "gallery.npy"))
    with open(os.path.join(HERE, "gallery.txt"), encoding="utf-8") as handle:
        paths = handle.read().splitlines()
    top = np.array([min(k, len(paths))], np.int64)
    feeds = {"query": encode_text(text, cfg), "gallery": gallery, "k": top}
    scores, indices = session("feature_matmul.onnx").run(None, feeds)
    for score, i in zip(scores[0], indices[0]):  # noqa: B905 (zip(strict=) needs Python 3.10)
        print(f"{score:.4f}  {paths[i]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("index").add_argument("folder")
    s = sub.add_parser("search")
    s.add_argument("text")
    s.add_argument("-k", type=int, default=5)
    args = parser.parse_args(argv)
    cfg = read_json("config.json")
    if args.cmd == "index":
        index(args.folder, cfg)
    else:
        search(args.text, args.k, cfg)


if __name__ == "__main__":
    main()
