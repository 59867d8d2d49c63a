"""The checkpoint reader: a transformers checkpoint directory's own files -> ``ModelSpec``, and its identity.

``read_checkpoint`` reads ``config.json``, ``preprocessor_config.json``, ``tokenizer_config.json`` and two
scalars of the weights, so that architecture, weights and preprocessing always come from one place; the
per-family rules (defaults, padding, scoring) come from ``glimpse.families``. ``fingerprint`` hashes
configs and whole weight files into the key that vectors are stored under.

Which checkpoint a *name* means (the built-in names, the Hugging Face cache, downloads) is
``glimpse.registry``'s job. Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from pathlib import Path
from typing import Any

from glimpse import openclip
from glimpse.errors import ModelError, ModelNotFoundError
from glimpse.families import family_of_model_type, get_family, model_classes, supported_model_types
from glimpse.spec import SPEC_FILENAME, ModelSpec, Preprocess, slug

# What a checkpoint directory needs; everything else in a hub repo (other frameworks' weights, open_clip
# files, pytorch_model.bin when safetensors exist) is left on the hub. A directory holding only open_clip
# files (``glimpse.openclip``) is read too: ``weight_files`` / ``is_checkpoint`` / ``read_checkpoint``.
CONFIG_FILES = ["config.json", "preprocessor_config.json", "processor_config.json", SPEC_FILENAME]
TOKENIZER_FILES = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
]
SAFETENSORS_FILES = ["model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"]
TORCH_BIN_FILES = ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"]

_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_MIB = 1 << 20


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelNotFoundError(
            f"{path.parent} is not a model checkpoint: it has no {path.name}; pass a directory saved with "
            "save_pretrained (config.json, model.safetensors, tokenizer and preprocessor files)"
        ) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path} ({exc}); re-download or re-save the model") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


def weight_files(directory: Path) -> list[Path]:
    """The weight files of a checkpoint (safetensors preferred), in a stable order.

    transformers weights first; a directory with none but open_clip's (``open_clip_config.json`` +
    ``open_clip_model.safetensors`` / ``open_clip_pytorch_model.bin``) has those.
    """
    for single, index in (
        ("model.safetensors", "model.safetensors.index.json"),
        ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    ):
        if (directory / single).is_file():
            return [directory / single]
        if (directory / index).is_file():
            weight_map = _read_json(directory / index).get("weight_map", {})
            return [directory / name for name in sorted(set(weight_map.values()))]
    open_clip_weights = openclip.weights_file(directory) if (directory / openclip.CONFIG_FILE).is_file() else None
    return [open_clip_weights] if open_clip_weights else []


def is_open_clip_checkpoint(directory: Path) -> bool:
    """True when ``directory``'s weights are open_clip's (no transformers weights beside them)."""
    found = weight_files(directory)
    return bool(found) and found[0].name in openclip.WEIGHT_FILES


def _configs_digest(directory: Path) -> Any:
    """A sha256 object primed with ``config.json`` and ``preprocessor_config.json`` (name and bytes); without
    the latter, ``processor_config.json`` (where transformers 5 saves a processor's image settings)."""
    digest = hashlib.sha256()
    image_config = "preprocessor_config.json" if (directory / "preprocessor_config.json").is_file() \
        else "processor_config.json"
    for name in ("config.json", image_config):
        path = directory / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest


def _require_weights(directory: Path) -> list[Path]:
    weights = weight_files(directory)
    if not weights:
        raise ModelNotFoundError(
            f"{directory} has no weights (expected model.safetensors or pytorch_model.bin); "
            "re-download the model or pass the directory it was saved to"
        )
    return weights


def fingerprint(directory: str | Path) -> str:
    """sha256 hex of a checkpoint's identity: its configs and the full content of every weight file.

    Hashes ``config.json`` and ``preprocessor_config.json`` bytes (an open_clip checkpoint's
    ``open_clip_config.json``) and, per weight file, its name, size and
    content sha256 (``digests.file_sha256``: free for a Hugging Face snapshot, else computed once per file
    version and cached), so checkpoints that differ in any weight get different fingerprints.
    """
    from glimpse.digests import file_sha256

    directory = Path(directory)
    digest = _configs_digest(directory)
    if is_open_clip_checkpoint(directory):  # its architecture and preprocessing are in open_clip_config.json
        path = directory / openclip.CONFIG_FILE
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(b"weights-sha256\0")  # never equal to a legacy fingerprint of the same files
    for path in _require_weights(directory):
        try:
            size, content = path.stat().st_size, file_sha256(path)
        except OSError as exc:
            raise ModelError(f"cannot read weights {path} ({exc})") from exc
        digest.update(f"{path.name}\0{size}\0{content}\0".encode())
    return digest.hexdigest()


def legacy_fingerprint(directory: str | Path) -> str:
    """The fingerprint glimpse gave a checkpoint before keys hashed whole weight files (for migrations).

    Configs plus, per weight file, its name, size and first and last MiB: checkpoints that differ only in
    the middle of their weights collide, which is why ``fingerprint`` replaced it.
    """
    directory = Path(directory)
    digest = _configs_digest(directory)
    for path in _require_weights(directory):
        try:
            size = path.stat().st_size
            with path.open("rb") as handle:
                head = handle.read(_MIB)
                handle.seek(max(size - _MIB, 0))
                tail = handle.read(_MIB)
        except OSError as exc:
            raise ModelError(f"cannot read weights {path} ({exc})") from exc
        digest.update(f"{path.name}\0{size}\0".encode() + head + tail)
    return digest.hexdigest()


def _safetensors_scalar(directory: Path, tensor: str, file: str = "model.safetensors") -> float | None:
    """Read one scalar tensor from the checkpoint's safetensors without torch; ``None`` if not there.

    The format is an 8-byte little-endian header length, a JSON header (dtype, shape, data offsets), then
    the raw data, so reading a scalar costs two small reads.
    """
    candidates = [directory / file]
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shard = _read_json(index).get("weight_map", {}).get(tensor)
        candidates = [directory / shard] if shard else []
    formats = {"F32": "<f", "F64": "<d", "F16": "<e"}
    for path in candidates:
        try:
            with path.open("rb") as handle:
                (header_len,) = struct.unpack("<Q", handle.read(8))
                if header_len > 100 * _MIB:
                    return None
                header = json.loads(handle.read(header_len))
                info = header.get(tensor)
                if not info or info.get("dtype") not in formats or math.prod(info.get("shape", [])) != 1:
                    continue
                start, end = info["data_offsets"]
                handle.seek(8 + header_len + start)
                (value,) = struct.unpack(formats[info["dtype"]], handle.read(end - start))
                return float(value)
        except (OSError, ValueError, KeyError, struct.error):
            continue
    return None


def _pair(value: Any, default: int) -> tuple[int, int]:
    """A processor size as ``(height, width)``: int, ``{"height", "width"}`` or ``{"shortest_edge"}``."""
    if value is None:
        return default, default
    if isinstance(value, int):
        return value, value
    if isinstance(value, dict):
        if "height" in value and "width" in value:
            return int(value["height"]), int(value["width"])
        if "shortest_edge" in value:
            return int(value["shortest_edge"]), int(value["shortest_edge"])
    raise ModelError(f"unsupported image size {value!r} in preprocessor_config.json")


def preprocess_from_processor(config: dict[str, Any], family: str) -> Preprocess:
    """``Preprocess`` equivalent to a transformers image processor config of ``family``.

    Defaults for missing keys are the family's processor class defaults (``ModelFamily.processor_*``; e.g.
    CLIP/ChineseCLIP: shortest edge 224 + center crop 224, OpenAI mean/std; SigLIP: 224x224 squash, mean/std
    0.5; all bicubic).
    """
    row = get_family(family)
    if config.get("do_resize", True) is False:
        raise ModelError("preprocessor_config.json has do_resize=false; glimpse needs a fixed input size")
    size = config.get("size", row.processor_size())
    if isinstance(size, dict) and "longest_edge" in size:
        raise ModelError(f"unsupported resize {size!r} (longest_edge) in preprocessor_config.json")
    # An int size means the shortest edge for these processors (their default_to_square is False).
    shortest = isinstance(size, int) or (isinstance(size, dict) and "shortest_edge" in size)
    crop = bool(config.get("do_center_crop", row.processor_crop))
    mean = tuple(float(x) for x in config.get("image_mean", row.processor_mean))
    std = tuple(float(x) for x in config.get("image_std", row.processor_std))
    if not config.get("do_normalize", True):
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    rescale = float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0
    resample = config.get("resample", row.processor_resample)
    interpolation = _PIL_RESAMPLE.get(resample) if isinstance(resample, int) else None
    if interpolation is None:
        raise ModelError(f"unsupported resample {resample!r} in preprocessor_config.json (expected 0-5)")
    if len(mean) != 3 or len(std) != 3:
        raise ModelError(f"image_mean/image_std must have 3 values, found {mean} / {std}")
    common: dict[str, Any] = {"interpolation": interpolation, "mean": mean, "std": std, "rescale": rescale}

    if row.processor_resize == "naflex":
        return _naflex_preprocess(config, common)
    if shortest:
        edge = _pair(size, 224)[0]
        if not crop:
            raise ModelError(
                "preprocessor_config.json resizes the shortest edge without a center crop, which gives "
                "variable input sizes; glimpse supports shortest-edge + crop or a fixed (height, width)"
            )
        height, width = _pair(config.get("crop_size"), 224)
        return Preprocess(height=height, width=width, resize="shortest", shortest_edge=edge, crop=True, **common)
    height, width = _pair(size, 224)
    if crop and _pair(config.get("crop_size"), height) != (height, width):
        raise ModelError(
            f"preprocessor_config.json resizes to {height}x{width} then crops to {config.get('crop_size')}; "
            "glimpse supports a squash resize only without a further crop"
        )
    return Preprocess(height=height, width=width, resize="squash", shortest_edge=None, crop=False, **common)


def _naflex_preprocess(config: dict[str, Any], common: dict[str, Any]) -> Preprocess:
    """SigLIP2 NaFlex (``Siglip2ImageProcessor``): ``patch_size`` (16) and ``max_num_patches`` (256)."""
    patch, patches = config.get("patch_size", 16), config.get("max_num_patches", 256)
    if not (isinstance(patch, int) and isinstance(patches, int) and patch > 0 and patches > 0):
        raise ModelError(f"preprocessor_config.json has patch_size={patch!r}, max_num_patches={patches!r}; "
                         "both must be positive integers")
    side = patch * math.isqrt(patches)
    return Preprocess(height=side, width=side, resize="naflex", shortest_edge=None, crop=False,
                      patch_size=patch, max_num_patches=patches, **common)


def image_processor_config(directory: Path) -> dict[str, Any]:
    """The image processor's settings: ``preprocessor_config.json``, else the ``image_processor`` section of
    ``processor_config.json`` (a processor saved whole by transformers 5, e.g. ``AltCLIPProcessor``), else
    ``{}`` (the family's defaults)."""
    path = directory / "preprocessor_config.json"
    if path.is_file():
        return _read_json(path)
    combined = directory / "processor_config.json"
    section = _read_json(combined).get("image_processor") if combined.is_file() else None
    return section if isinstance(section, dict) else {}


def _tokenizer_max_length(directory: Path) -> int | None:
    path = directory / "tokenizer_config.json"
    if not path.is_file():
        return None
    value = _read_json(path).get("model_max_length")
    # transformers writes a huge sentinel (int(1e30)) when a tokenizer has no limit.
    return int(value) if isinstance(value, int | float) and 0 < value < 1_000_000 else None


def _hub_revision(directory: Path) -> str | None:
    """The commit hash when ``directory`` is a snapshot in a Hugging Face cache."""
    if directory.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", directory.name):
        return directory.name
    return None


def read_checkpoint(directory: str | Path, name: str | None = None, *, repo_id: str | None = None,
                    revision: str | None = None, languages: tuple[str, ...] | None = None) -> ModelSpec:
    """Build the ``ModelSpec`` of a transformers checkpoint directory from its own files.

    ``name`` is the user-facing name (a hub repo id, a registry name); without it the directory name is
    used. The key is ``f"{slug(name)}-{fingerprint[:10]}"``, so it changes when the weights change.
    ``repo_id`` (default: ``name`` when it looks like ``owner/repo`` and is no local path) is recorded in
    ``extra`` so the weights can be found again by name; ``revision`` defaults to the Hugging Face cache
    snapshot's commit, ``languages`` to the family's.
    """
    directory = Path(directory).expanduser().resolve()
    if is_open_clip_checkpoint(directory):
        return _read_open_clip(directory, name, repo_id=repo_id, revision=revision, languages=languages)
    config = _read_json(directory / "config.json")
    model_type = config.get("model_type")
    family = family_of_model_type(model_type)
    if family is None:
        raise ModelError(
            f"{directory} holds a {model_type!r} model; glimpse supports model_type "
            f"{supported_model_types()} ({', '.join(model_classes())} checkpoints)"
        )
    text = config.get("text_config") or {}
    name = name or directory.name

    # A family without a projection head (SigLIP) embeds with the vision tower's own width.
    dim = family.dim_of(config)
    context_length = int(text.get("max_position_embeddings", family.default_context_length)) - family.context_offset
    tokenizer_limit = _tokenizer_max_length(directory)
    if tokenizer_limit:
        context_length = min(context_length, tokenizer_limit)

    # logit_scale is stored as a log; the weights hold the trained value, the config only the init value.
    log_scale = _safetensors_scalar(directory, "logit_scale")
    default_scale = config.get("logit_scale_init_value", family.default_log_logit_scale)
    logit_scale = math.exp(log_scale if log_scale is not None else float(default_scale))
    logit_bias: float | None = None
    if family.sigmoid:
        bias = _safetensors_scalar(directory, "logit_bias")
        logit_bias = bias if bias is not None else float(config.get("logit_bias_init_value",
                                                                    family.default_logit_bias))

    preprocess = preprocess_from_processor(image_processor_config(directory), family.name)

    if repo_id is None and "/" in name and not Path(name).exists():
        repo_id = name
    extra: dict[str, Any] = {"repo_id": repo_id} if repo_id else {}
    return ModelSpec(
        name=name,
        key=f"{slug(name)}-{fingerprint(directory)[:10]}",
        family=family.name,
        source=str(directory),
        preprocess=preprocess,
        dim=dim,
        context_length=context_length,
        runtime="torch",
        revision=revision or _hub_revision(directory),
        languages=languages or family.languages,
        logit_scale=logit_scale,
        logit_bias=logit_bias,
        text_padding=family.text_padding,
        extra=extra,
    )


def _read_open_clip(directory: Path, name: str | None, *, repo_id: str | None, revision: str | None,
                    languages: tuple[str, ...] | None) -> ModelSpec:
    """``read_checkpoint`` of an open_clip checkpoint (``glimpse.openclip``): a CLIP-family torch spec."""
    config = openclip.read_config(directory)
    model_cfg = config["model_cfg"]
    kwargs = openclip.clip_config_kwargs(model_cfg)  # refuses towers CLIPModel cannot express
    family = get_family("clip")
    name = name or directory.name
    weights = weight_files(directory)[0]
    log_scale = _safetensors_scalar(directory, "logit_scale", weights.name) if weights.suffix == ".safetensors" \
        else None
    if repo_id is None and "/" in name and not Path(name).exists():
        repo_id = name
    extra: dict[str, Any] = {"repo_id": repo_id} if repo_id else {}
    extra["format"] = "open_clip"  # encoders.torch maps the weights (openclip.load_clip_model)
    extra["clean"] = "open_clip"  # queries cleaned as open_clip's SimpleTokenizer cleans (tokenizer.clean_text)
    return ModelSpec(
        name=name,
        key=f"{slug(name)}-{fingerprint(directory)[:10]}",
        family=family.name,
        source=str(directory),
        preprocess=openclip.preprocess_of(config),
        dim=int(kwargs["projection_dim"]),
        context_length=openclip.context_length(model_cfg),
        runtime="torch",
        revision=revision or _hub_revision(directory),
        languages=languages or family.languages,
        # A .bin's trained scale cannot be read without torch: CLIP's trained temperature (100) then.
        logit_scale=math.exp(log_scale) if log_scale is not None else family.open_clip_logit_scale,
        logit_bias=None,
        text_padding=family.text_padding,
        extra=extra,
    )


def is_checkpoint(directory: Path) -> bool:
    """True when ``directory`` holds a transformers checkpoint (``config.json`` and weights) or an
    open_clip one (``open_clip_config.json`` and its weights)."""
    return ((directory / "config.json").is_file() or is_open_clip_checkpoint(directory)) \
        and bool(weight_files(directory))


def legacy_key(spec: ModelSpec) -> str | None:
    """The key glimpse gave these weights before keys hashed whole weight files, or ``None``.

    A torch checkpoint or an immich directory had ``<slug>-<legacy fingerprint[:10]>``; an fp32 export
    made since records its source's legacy key (an older export's ``spec.json`` still holds its old key,
    so it needs none). ``None`` when the old key cannot be known (fp16/int8 exports always hashed their
    files) or the files cannot be read now. Libraries rename their vectors from this key to ``spec.key``.
    """
    from glimpse.encoders.immich import is_immich_dir
    from glimpse.encoders.immich import legacy_fingerprint as immich_legacy_fingerprint

    source = Path(spec.source)
    try:
        if spec.runtime == "torch" and spec.extra.get("format") != "open_clip" and is_checkpoint(source):
            return f"{slug(spec.name)}-{legacy_fingerprint(source)[:10]}"
        if spec.runtime == "onnx" and (spec.extra.get("onnx") or {}).get("layout") == "immich" \
                and is_immich_dir(source):
            return f"{slug(spec.name)}-{immich_legacy_fingerprint(source)[:10]}"
    except (ModelError, OSError):
        return None
    recorded = (spec.extra.get("exported_from") or {}).get("legacy_key")
    return recorded if isinstance(recorded, str) and recorded != spec.key else None


