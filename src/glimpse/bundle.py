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

run.py is a copy of the module ``glimpse.bundle_runner`` (its own code, no glimpse import, linted and
tested with the package), so it runs on a board with nothing else installed.
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
    (out / "run.py").write_bytes(runner_source())
    return out


def runner_source() -> bytes:
    """The text of the bundle's run.py: the packaged ``glimpse/bundle_runner.py``."""
    from importlib.resources import files

    return files("glimpse").joinpath("bundle_runner.py").read_bytes()

