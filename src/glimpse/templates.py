"""Prompt templates and prompt ensembles, for zero-shot classification, moderation and tagging alike.

Zero-shot sets: named sets shipped in ``glimpse/data/templates/*.txt`` or a user's file. A template is a
string with one ``{}`` where the class name goes (``"a photo of a {}."``). Files hold one template per line;
blank lines and lines starting with ``#`` are ignored; ``fill`` puts a label in.

Tag sets (``TAG_TEMPLATES``, ``TAG_TEMPLATES_ZH``): ``str.format`` templates with ``{article}`` as well;
``prompts`` puts a tag name in.

Either way a label becomes several sentences, each embedded by a CLIP text tower, and ``ensemble`` averages
them into one label embedding: more robust than one prompt ("a photo of a {}" alone favours objects, and
misses scenes and actions).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from glimpse.encoders.base import l2_normalize
from glimpse.errors import UserInputError

if TYPE_CHECKING:
    from glimpse.encoders.base import Encoder
    from glimpse.pipeline import Progress

TEMPLATES_DIR = Path(__file__).resolve().parent / "data" / "templates"
DEFAULT_TEMPLATES = "short"


def template_names() -> list[str]:
    """The built-in template set names (``openai``: the 80 ImageNet templates, ``short``, ``photo``)."""
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.txt"))


def _parse(text: str, source: str) -> list[str]:
    templates = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not templates:
        raise UserInputError(f"{source} holds no templates; write one template per line, e.g. 'a photo of a {{}}.'")
    for template in templates:
        if template.count("{}") != 1:
            raise UserInputError(
                f"template {template!r} in {source} must contain exactly one '{{}}' where the label goes"
            )
    return templates


def load_templates(name_or_file: str | None = None) -> list[str]:
    """Templates of a built-in set name or a file path (default: ``short``)."""
    name = name_or_file or DEFAULT_TEMPLATES
    builtin = TEMPLATES_DIR / f"{name}.txt"
    if "/" not in name and builtin.is_file():
        return _parse(builtin.read_text(encoding="utf-8"), f"built-in template set {name!r}")
    path = Path(name).expanduser()
    if path.is_file():
        try:
            return _parse(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise UserInputError(f"cannot read templates file {path} ({exc})") from exc
    raise UserInputError(
        f"templates {name!r} is neither a built-in set ({', '.join(template_names())}) nor a file; "
        "pass a set name or a text file with one template per line"
    )


def fill(templates: list[str], label: str) -> list[str]:
    """Every template with ``label`` put in (``str.replace``: labels may hold braces)."""
    return [template.replace("{}", label) for template in templates]


# -- tag prompt ensembles ------------------------------------------------------------------------------
# Written for glimpse: varied framing (photo, picture, close-up, scene), quality and context words.
TAG_TEMPLATES: tuple[str, ...] = (
    "a photo of {article} {}.",
    "a photo of the {}.",
    "a picture showing {article} {}.",
    "an image that contains {article} {}.",
    "a close-up photo of the {}.",
    "a blurry photo of {article} {}.",
    "a bright photo of the {}.",
    "a dark photo of the {}.",
    "a cropped photo of {article} {}.",
    "a low resolution photo of the {}.",
    "a snapshot with {article} {} in it.",
    "there is {article} {} in this scene.",
    "a good photo of the {}.",
    "a photo of many {}.",
    "a black and white photo of the {}.",
    "a painting of {article} {}.",
)

# Chinese-speaking CLIP-family models (Chinese-CLIP, multilingual SigLIP) read these for Chinese names.
TAG_TEMPLATES_ZH: tuple[str, ...] = (
    "一张{}的照片。",
    "这张图片里有{}。",
    "{}的特写照片。",
    "一张模糊的{}的照片。",
    "一张明亮的{}的照片。",
    "画面中可以看到{}。",
    "一幅{}的画。",
    "一张有很多{}的照片。",
)


def article(name: str) -> str:
    """The indefinite article of ``name`` ("a" or "an", by its first letter)."""
    return "an" if name[:1].lower() in "aeiou" else "a"


def prompts(name: str, templates: Sequence[str] = TAG_TEMPLATES) -> list[str]:
    """The sentences of one tag name (``_`` read as a space)."""
    clean = name.replace("_", " ").strip()
    return [t.format(clean, article=article(clean)) for t in templates]


def embed_labels(encoder: Encoder, names: Sequence[str], templates: Sequence[str] = TAG_TEMPLATES,
                 batch: int = 512, progress: Progress | None = None) -> np.ndarray:
    """``float32[n, T, d]``: each name's prompt embeddings (L2-normalised rows), ``T = len(templates)``.

    ``progress`` counts the prompts encoded.
    """
    texts = [p for name in names for p in prompts(name, templates)]
    if progress is not None:
        progress.start(len(texts))
    parts = []
    try:
        for i in range(0, len(texts), batch):
            parts.append(encoder.encode_texts(texts[i : i + batch]))
            if progress is not None:
                progress.advance(len(parts[-1]))
    finally:
        if progress is not None:
            progress.finish()
    flat = np.concatenate(parts) if parts else np.zeros((0, encoder.dim), dtype=np.float32)
    return flat.reshape(len(names), len(templates), -1)


def ensemble(embeddings: np.ndarray) -> np.ndarray:
    """``float32[n, T, d]`` -> ``float32[n, d]``: per label, the L2-renormalised mean over its ``T`` prompts
    (CLIP's prompt ensembling; zero rows stay zero)."""
    return l2_normalize(np.asarray(embeddings, dtype=np.float32).mean(axis=1))
