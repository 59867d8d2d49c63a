"""Regenerate tests/immich_goldens.json by running immich's own CLIP reader on the fixtures of tests/immich_fixtures.py.

Not a test and not run by the suite: a record of exactly how the goldens were made. It needs immich's
machine-learning sources (``immich_ml/models/clip/textual.py``, ``visual.py``, ``models/transforms.py`` and
``WEBLATE_TO_FLORES200`` of ``models/constants.py``, from immich-app/immich; never part of this repository)
and shims for what is not part of the computation: ``immich_ml.config.log``, ``immich_ml.schemas`` (enum
names), ``immich_ml.models.base.InferenceModel`` (``model_dir`` = ``<model>/<textual|visual>``, ``_load``
returning a plain CPU onnxruntime session with ``for_shape`` -> itself and ``normalizes_input = False``, as
for a float32 graph), ``immich_ml.sessions.ort`` and ``orjson`` (``dumps`` of the output as a JSON list).
With those on ``PYTHONPATH`` (first) and torch + transformers + onnxruntime + tokenizers + Pillow::

    PYTHONPATH=/tmp/immich_ref:/tmp/immich_ref/shims:src:tests \
        python tests/make_immich_goldens.py > tests/immich_goldens.json

It builds each fixture style into a temporary folder (seeded, so the test rebuilds the same towers), then
calls immich's ``OpenClipTextualEncoder`` (``MClipTextualEncoder`` for M-CLIP) ``tokenize`` and ``_predict``
on ``immich_fixtures.TEXTS`` (the nllb fixture once per language of ``LANGUAGES``) and
``OpenClipVisualEncoder._predict`` on ``immich_fixtures.images()``, and prints the token ids immich feeds
and the embeddings it returns.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def main() -> None:
    from immich_ml.models.clip.textual import MClipTextualEncoder, OpenClipTextualEncoder
    from immich_ml.models.clip.visual import OpenClipVisualEncoder

    from immich_fixtures import LANGUAGES, NAMES, STYLES, TEXTS, images, make_immich_model

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for style in STYLES:
            name = NAMES[style]
            directory = make_immich_model(Path(tmp) / name, style)
            textual_cls = MClipTextualEncoder if style == "mclip" else OpenClipTextualEncoder
            textual = textual_cls(name, directory)
            visual = OpenClipVisualEncoder(name, directory)
            entry: dict = {"name": name, "texts": {}}
            for lang in (LANGUAGES if style == "nllb" else {None: None}):
                rows = []
                for text in TEXTS:
                    feeds = textual.tokenize(text, language=lang)
                    ids = feeds["text" if "text" in feeds else "input_ids"][0].tolist()
                    rows.append({"text": text, "ids": ids, "embedding": json.loads(textual._predict(text, lang))})
                entry["texts"][LANGUAGES.get(lang, "") if lang else ""] = rows
            entry["images"] = [json.loads(visual._predict(image)) for image in images()]
            out[style] = entry
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
