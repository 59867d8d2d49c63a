"""Read immich-style ONNX CLIP model directories (as the immich community publishes them on the hub).

Layout::

    config.json                    open_clip model config: embed_dim, vision_cfg.image_size, text_cfg.context_length
    visual/model.onnx              image tower: float32[batch, 3, H, W] -> float32[batch, d]
    visual/preprocess_cfg.json     size, mean, std, interpolation, resize_mode ("shortest" | "squash")
    textual/model.onnx             text tower: int ids (+ attention mask) -> float32[batch, d]
    textual/tokenizer.json         Hugging Face tokenizers file
    textual/tokenizer_config.json  pad_token, model_max_length (optional)

:func:`immich_spec` turns such a directory into a ``ModelSpec`` with runtime ``"onnx"``, so the ONNX
backend runs it like a ``glimpse export`` directory. Only json and hashlib are imported here: this module
is consulted while resolving every ``--model`` directory.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from glimpse.errors import ModelError
from glimpse.families import OPENAI_MEAN, OPENAI_STD, family_of_open_clip
from glimpse.spec import ModelSpec, Preprocess, slug

VISUAL = "visual/model.onnx"
TEXTUAL = "textual/model.onnx"
TOKENIZER = "textual/tokenizer.json"
PREPROCESS = "visual/preprocess_cfg.json"
_MIB = 1 << 20
_INTERPOLATIONS = {"bicubic", "bilinear", "nearest", "lanczos", "box", "hamming"}


_REQUIRED = ("config.json", VISUAL, TEXTUAL, TOKENIZER)


def is_immich_dir(directory: str | Path) -> bool:
    """True when ``directory`` has the immich layout: config.json and a ``visual/`` or ``textual/`` tower folder.

    A half-downloaded folder (one tower, or a tower without its model.onnx) counts, so that
    :func:`immich_spec` can say which files are missing rather than "not a model".
    """
    directory = Path(directory)
    return (directory / "config.json").is_file() and any(
        (directory / tower).is_dir() for tower in ("visual", "textual"))


def missing_files(directory: str | Path) -> list[str]:
    """The files of the immich layout that ``directory`` lacks (``[]`` when complete)."""
    directory = Path(directory)
    return [name for name in _REQUIRED if not (directory / name).is_file()]


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"immich-style model {path.parents[1] if path.parent.name else path.parent} lacks "
                         f"{path.name}; download the complete model directory") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path} ({exc}); re-download the model") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


def _preprocess(cfg: dict[str, Any], image_size: Any) -> Preprocess:
    size = cfg.get("size", image_size or 224)
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[-1]))
    mode = cfg.get("resize_mode", "shortest")
    interpolation = str(cfg.get("interpolation", "bicubic")).lower()
    if interpolation not in _INTERPOLATIONS:
        raise ModelError(f"visual/preprocess_cfg.json: unsupported interpolation {interpolation!r}; "
                         f"expected one of {sorted(_INTERPOLATIONS)}")
    mean = tuple(float(x) for x in cfg.get("mean", OPENAI_MEAN))
    std = tuple(float(x) for x in cfg.get("std", OPENAI_STD))
    if len(mean) != 3 or len(std) != 3:
        raise ModelError(f"visual/preprocess_cfg.json: mean/std need 3 values, found {mean} / {std}")
    common: dict[str, Any] = {"height": height, "width": width, "interpolation": interpolation,
                              "mean": mean, "std": std}
    if mode == "squash":
        return Preprocess(resize="squash", crop=False, **common)
    if mode == "shortest":
        return Preprocess(resize="shortest", shortest_edge=min(height, width), crop=True, **common)
    raise ModelError(f"visual/preprocess_cfg.json: resize_mode {mode!r} is not supported "
                     "(expected 'shortest' or 'squash')")


_FINGERPRINTED = ("config.json", PREPROCESS, VISUAL, TEXTUAL)


def _fingerprint(directory: Path) -> str:
    """sha256 of the configs' and both towers' names, sizes and full-content sha256 (``digests.file_sha256``).

    A tower's ONNX external data (``model.onnx.data``, ``model.onnx_data`` beside ``model.onnx``) is hashed too.
    """
    from glimpse.digests import file_sha256

    digest = hashlib.sha256(b"content-sha256\0")  # never equal to a legacy fingerprint of the same files
    paths = [directory / name for name in _FINGERPRINTED[:2]]
    for tower in (VISUAL, TEXTUAL):
        paths += sorted((directory / tower).parent.glob("model.onnx*"))
    for path in paths:
        if path.is_file():
            name = path.relative_to(directory).as_posix()
            try:
                digest.update(f"{name}\0{path.stat().st_size}\0{file_sha256(path)}\0".encode())
            except OSError as exc:
                raise ModelError(f"cannot read {path} ({exc}); check its permissions or re-download the model"
                                 ) from exc
    return digest.hexdigest()


def legacy_fingerprint(directory: str | Path) -> str:
    """The fingerprint glimpse gave an immich directory before keys hashed whole files (for migrations):
    configs and, per tower, the size and first and last MiB of its model.onnx (middle changes collide)."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for name in _FINGERPRINTED:
        path = directory / name
        if not path.is_file():
            continue
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(_MIB)
            handle.seek(max(size - _MIB, 0))
            tail = handle.read(_MIB)
        digest.update(f"{name}\0{size}\0".encode() + head + tail)
    return digest.hexdigest()


def _token(value: Any) -> str | None:
    """A special token as tokenizer_config.json stores it: a string or ``{"content": ...}``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def immich_spec(directory: str | Path, name: str | None = None) -> ModelSpec:
    """The ``ModelSpec`` (runtime ``"onnx"``) of the immich-style model in ``directory``.

    The family comes from ``families.family_of_open_clip`` (open_clip configs carry no ``model_type``); a
    sigmoid family takes its scale and bias from ``init_logit_scale`` / ``init_logit_bias`` (defaults: the
    row's ``open_clip_logit_scale`` / ``default_logit_bias``), a softmax one the row's ``open_clip_logit_scale``.
    """
    directory = Path(directory).expanduser().resolve()
    missing = missing_files(directory)
    if missing:
        raise ModelError(f"immich-style model {directory} is incomplete: it lacks {', '.join(missing)}; "
                         "download the whole model folder (config.json, visual/ and textual/)")
    config = _json(directory / "config.json")
    if not isinstance(config.get("embed_dim"), int):
        raise ModelError(f"{directory}/config.json has no integer embed_dim; is this an immich CLIP model?")
    if not (directory / TOKENIZER).is_file():
        raise ModelError(f"immich-style model {directory} lacks {TOKENIZER}; download the complete model")
    vision = config.get("vision_cfg") or {}
    text = config.get("text_cfg") or {}
    pre_path = directory / PREPROCESS
    preprocess = _preprocess(_json(pre_path) if pre_path.is_file() else {}, vision.get("image_size"))
    tok_cfg_path = directory / "textual" / "tokenizer_config.json"
    tok_cfg = _json(tok_cfg_path) if tok_cfg_path.is_file() else {}
    special_path = directory / "textual" / "special_tokens_map.json"
    special = _json(special_path) if special_path.is_file() else {}
    pad_token = _token(tok_cfg.get("pad_token")) or _token(special.get("pad_token")) or "<|endoftext|>"
    context_length = int(text.get("context_length") or tok_cfg.get("model_max_length") or 77)
    label = name if name and not Path(name).expanduser().is_dir() else directory.name
    family = family_of_open_clip(config, label)
    multilingual = bool(re.search(r"xlm|multilingual|nllb|m-clip|labse", label, re.IGNORECASE))
    # immich's reader: every query is whitespace-cleaned; open_clip's tokenizer_kwargs may ask for more.
    kwargs = text.get("tokenizer_kwargs") or {}
    clean = "canonicalize" if isinstance(kwargs, dict) and kwargs.get("clean") == "canonicalize" else "whitespace"
    # NLLB-CLIP text towers read a FLORES-200 language token before the caption.
    nllb = (label.lower().startswith("nllb") or "nllb" in str(text.get("hf_tokenizer_name", "")).lower()
            or "nllb" in str(tok_cfg.get("tokenizer_class", "")).lower())
    return ModelSpec(
        name=label,
        key=f"{slug(label)}-{_fingerprint(directory)[:10]}",
        family=family.name,
        source=str(directory),
        preprocess=preprocess,
        dim=int(config["embed_dim"]),
        context_length=context_length,
        runtime="onnx",
        languages=("multi",) if multilingual or nllb else ("en",),
        logit_scale=float(config.get("init_logit_scale", family.open_clip_logit_scale)) if family.sigmoid
        else family.open_clip_logit_scale,
        logit_bias=float(config.get("init_logit_bias", family.default_logit_bias)) if family.sigmoid else None,
        # immich pads every query to the full context length (its graphs take exactly [1, context_length]).
        text_padding="max_length",
        extra={"onnx": {"visual": VISUAL, "textual": TEXTUAL, "tokenizer": TOKENIZER, "precision": "fp32",
                        "pad_token": pad_token, "layout": "immich", "clean": clean,
                        **({"language_prefix": "flores200"} if nllb else {})}},
    )
