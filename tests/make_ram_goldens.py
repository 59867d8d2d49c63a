"""Regenerate the RAM / RAM++ parity goldens of tests/test_tagging_ram.py by running the official code.

Not a test and not run by the suite: a record of exactly how ``GOLDEN`` was made, to re-run when the tiny
config, the weights (``fill``) or the inputs (``pixels``) change. It needs a checkout of the official
xinyu1205/recognize-anything (never part of this repository) and a Python with torch and numpy whose
``transformers`` is the 4.x line the official ``ram/models/bert.py`` imports from (4.40.2 was used; 5.x
removed ``apply_chunking_to_forward`` & co.), e.g. an extra ``--target`` folder put first on ``PYTHONPATH``::

    pip install --no-deps --target /tmp/tf440 transformers==4.40.2 tokenizers==0.19.1 huggingface_hub==0.23.5
    PYTHONPATH=/tmp/tf440 python tests/make_ram_goldens.py /path/to/recognize-anything > goldens.json

What it does, so that every number in the goldens comes from the official code:

* copies the official ``ram/`` package to a temporary folder and rewrites its config files to the tiny shapes
  (Swin embed 8, depths 2,2,2,2, heads 1,2,2,4, window 7, 224 px; q2l and Tag2Text BERTs hidden 32, 4 heads,
  intermediate 48, 2 layers), and its per-class threshold file (which the official code reads from its own
  folder) to ``THRESHOLDS``;
* replaces only what is not part of the computation: ``timm`` (``DropPath`` is the identity in eval mode,
  ``trunc_normal_`` an init the weights overwrite), ``fairscale``/``scipy`` (unused here), and the
  ``bert-base-uncased`` tokenizer download (a local 64-token vocabulary; tagging never tokenizes);
* builds the official ``RAM`` / ``RAM_plus`` (``vit='swin_b'``, ``image_size=224``, 12 tags), sets every
  parameter with the test's own ``fill`` (read from the test file's source, so both sides use one
  definition; RAM's tied tagging-head tensors under their ``tag_encoder.*`` names), loads strictly, and
  runs ``generate_tag`` on the test's ``pixels()``;
* ``shift`` is the median official logit with ``fc.bias`` unshifted (so some tags pass); ``logits`` are the
  official ``fc`` outputs (captured by a forward hook) with ``fc.bias`` lowered by ``shift``; ``tags`` are
  ``generate_tag``'s English output.
"""

from __future__ import annotations

import ast
import contextlib
import json
import shutil
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

TEST_FILE = Path(__file__).with_name("test_tagging_ram.py")
THRESHOLDS = [0.55, 0.41, 0.32, 0.31, 0.63, 0.67, 0.54, 0.59, 0.52, 0.67, 0.63, 0.3]
TINY_BERT = {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 48, "num_hidden_layers": 2,
             "vocab_size": 64}
TINY_SWIN = {"vision_width": 64, "image_res": 224, "window_size": 7, "embed_dim": 8, "depths": [2, 2, 2, 2],
             "num_heads": [1, 2, 2, 4]}


def test_definitions() -> dict:
    """``NUM``, ``label_embeddings``, ``fill`` and ``pixels`` from the test file, without importing glimpse."""
    tree = ast.parse(TEST_FILE.read_text(encoding="utf-8"))
    wanted = {"NUM", "label_embeddings", "fill", "pixels"}
    nodes = [n for n in tree.body if (isinstance(n, ast.FunctionDef) and n.name in wanted)
             or (isinstance(n, ast.Assign) and any(getattr(t, "id", None) in wanted for t in n.targets))]
    namespace: dict = {"np": np, "zlib": __import__("zlib")}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(TEST_FILE), "exec"), namespace)
    return namespace


def install_stand_ins(vocab_file: Path) -> None:
    """Modules the official code imports that take no part in tagging (see the module docstring)."""

    class DropPath(nn.Module):  # stochastic depth: the identity in eval mode
        def __init__(self, *args, **kwargs) -> None:
            super().__init__()

        def forward(self, x):
            return x

    def to_2tuple(x):
        return tuple(x) if isinstance(x, list | tuple) else (x, x)

    def unused(*args, **kwargs):
        raise AssertionError("not used by the tagging path")

    stand_ins = {
        "timm": {}, "timm.models": {},
        "timm.models.layers": {"DropPath": DropPath, "to_2tuple": to_2tuple, "trunc_normal_": lambda *a, **k: None},
        "timm.models.hub": {"download_cached_file": unused},
        "timm.models.vision_transformer": {"_cfg": unused, "PatchEmbed": unused},
        "timm.models.registry": {"register_model": lambda f: f},
        "timm.models.helpers": {"named_apply": unused, "adapt_input_conv": unused},
        "fairscale": {}, "fairscale.nn": {}, "fairscale.nn.checkpoint": {},
        "fairscale.nn.checkpoint.checkpoint_activations": {"checkpoint_wrapper": unused},
        "scipy": {"interpolate": types.SimpleNamespace()},
    }
    for name, attrs in stand_ins.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module

    from transformers import BertTokenizer

    BertTokenizer.from_pretrained = classmethod(lambda cls, *a, **k: cls(vocab_file=str(vocab_file)))


def prepare_package(official: Path, work: Path) -> Path:
    """A copy of the official ``ram/`` with tiny configs; imported without its ``__init__`` (inference deps)."""
    package = work / "ram"
    shutil.copytree(official / "ram", package)
    configs = package / "configs"
    for name in ("q2l_config.json", "med_config.json"):
        config = json.loads((configs / name).read_text())
        (configs / name).write_text(json.dumps({**config, **TINY_BERT}))
    swin = json.loads((configs / "swin" / "config_swinB_224.json").read_text())
    (configs / "swin" / "config_swinB_224.json").write_text(json.dumps({**swin, **TINY_SWIN}))
    (package / "data" / "ram_tag_list_threshold.txt").write_text("\n".join(map(str, THRESHOLDS)) + "\n")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(57)]
    (work / "vocab.txt").write_text("\n".join(vocab) + "\n")
    for name, path in (("ram", package), ("ram.models", package / "models")):
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        sys.modules[name] = module
    return package


def run_variant(plus: bool, defs: dict, work: Path) -> dict:
    if plus:
        from ram.models.ram_plus import RAM_plus as Official
    else:
        from ram.models.ram import RAM as Official
    num = defs["NUM"]
    (work / "tags.txt").write_text("\n".join(f"tag{i}" for i in range(num)) + "\n")
    (work / "tags_zh.txt").write_text("\n".join(f"标签{i}" for i in range(num)) + "\n")
    with contextlib.redirect_stdout(sys.stderr):  # it prints a line per tied module
        model = Official(image_size=224, vit="swin_b", tag_list=str(work / "tags.txt"),
                         tag_list_chinese=str(work / "tags_zh.txt")).eval()
    derived = ("relative_position_index", "attn_mask")
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith(derived):
            state[key] = value  # the official buffers as built
        else:
            name = key if plus else key.replace("tagging_head.", "tag_encoder.")
            state[key] = torch.from_numpy(defs["fill"](name, tuple(value.shape)))
    model.load_state_dict(state, strict=True)
    captured = []
    model.fc.register_forward_hook(lambda module, args, out: captured.append(out.squeeze(-1).detach().clone()))
    pixels = torch.from_numpy(defs["pixels"]())
    with torch.no_grad():
        model.generate_tag(pixels)
        shift = float(captured[-1].median())
        model.fc.bias -= shift
        tags = model.generate_tag(pixels)[0]
    return {"shift": shift, "logits": np.round(captured[-1].numpy().astype(np.float64), 6).tolist(), "tags": tags}


def main() -> None:
    official = Path(sys.argv[1]).resolve()
    import transformers

    if not transformers.__version__.startswith("4."):
        sys.exit(f"the official bert.py needs transformers 4.x, this Python has {transformers.__version__}")
    torch.set_num_threads(1)
    defs = test_definitions()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare_package(official, work)
        install_stand_ins(work / "vocab.txt")
        goldens = {"ram": run_variant(False, defs, work), "ram_plus": run_variant(True, defs, work),
                   "thresholds": THRESHOLDS}
    print(json.dumps(goldens, indent=1))


if __name__ == "__main__":
    main()
