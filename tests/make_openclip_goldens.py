"""Regenerate the open_clip parity goldens of tests/test_openclip.py by running open_clip's own model code.

Not a test and not run by the suite: a record of exactly how ``tests/data/openclip_goldens.json`` was made.
It needs open_clip's source (github.com/mlfoundations/open_clip, ``src/open_clip``; never part of this
repository) importable as the package ``open_clip``. torchvision is not installable here, and open_clip's
``__init__`` pulls in its data pipeline, so the run used a small shim (kept outside the repository) that

* registers ``open_clip`` as a bare package whose ``__path__`` is the checkout's ``src/open_clip`` (so its
  ``__init__`` with the data/transform imports is not run), and
* stubs ``torchvision.ops.misc.FrozenBatchNorm2d`` (imported by ``open_clip.utils``, used only to freeze
  ResNet towers) while ``open_clip.model`` is imported, then removes the stub again.

Command (open_clip at commit 89fb801, its ``src/`` extracted to ``/tmp/oc/src``, the shim at ``/tmp/oc/shim.py``)::

    PYTHONPATH=src:tests:/tmp/oc python tests/make_openclip_goldens.py > tests/data/openclip_goldens.json

What it does, so that every number in the goldens comes from open_clip:

* for ``quick_gelu`` true and false builds open_clip's own ``CLIP(**MODEL_CFG)`` (the test's tiny config:
  ViT width 32, 2 layers, head width 16, patch 8, image 32; text width 32, 2 layers, 2 heads, context 16,
  the vocabulary of ``tiny_models.small_clip_tokenizer``), eval mode, float32;
* sets every parameter with the test's ``fill_state`` (deterministic in the names and shapes, so the test
  rebuilds the same weights from ``shapes``) and loads it with ``strict=True``;
* encodes the test's ``pixels()`` with ``encode_image`` and the test's ``TEXTS`` as open_clip's tokenizer
  lays them out (``[bos, ..., eos]`` zero-padded to the context length; ids from the small CLIP tokenizer)
  with ``encode_text``; stores the unnormalised features.
"""

from __future__ import annotations

import json
import sys

import torch

from test_openclip import MODEL_CFG, TEXTS, fill_state, open_clip_ids, pixels


def main() -> None:
    import shim  # noqa: F401  (the open_clip import shim described above; before open_clip)
    from open_clip.model import CLIP

    out: dict = {"model_cfg": MODEL_CFG, "texts": TEXTS, "runs": {}}
    for quick in (True, False):
        model = CLIP(**MODEL_CFG, quick_gelu=quick).eval()
        shapes = {key: list(value.shape) for key, value in model.state_dict().items()}
        model.load_state_dict(fill_state(shapes), strict=True)
        ids = open_clip_ids()
        with torch.no_grad():
            image = model.encode_image(torch.from_numpy(pixels()))
            text = model.encode_text(torch.from_numpy(ids))
        out["shapes"] = shapes
        out["ids"] = ids.tolist()
        out["runs"][str(quick).lower()] = {"image": image.tolist(), "text": text.tolist()}
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
