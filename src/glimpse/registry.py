"""Named models, checkpoint directories -> ``ModelSpec``, and the encoder factory.

``resolve_model_dir`` turns a name or a path into a local checkpoint directory (local directory, then the
Hugging Face cache, then a download of only the files glimpse needs). ``spec_from_checkpoint`` reads the
checkpoint's own ``config.json`` and ``preprocessor_config.json`` so that architecture, weights and
preprocessing always come from one place.

Importing this module imports neither torch nor transformers (``glimpse search`` must stay light); the
torch backend is imported inside ``load_encoder``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import struct
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glimpse.errors import ModelError, ModelNotFoundError
from glimpse.spec import SPEC_FILENAME, Family, ModelSpec, Preprocess

if TYPE_CHECKING:
    from glimpse.encoders.base import Encoder

DEFAULT_MODEL = "openai/clip-vit-base-patch32"

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class RegistryEntry:
    """A built-in model: ``name`` is what users type, ``repo_id`` where its weights live on the hub."""

    name: str
    repo_id: str
    family: Family
    dim: int
    languages: tuple[str, ...]
    description: str
    revision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``languages`` as a list)."""
        data = asdict(self)
        data["languages"] = list(self.languages)
        return data


_BUILTINS: tuple[RegistryEntry, ...] = (
    RegistryEntry(
        "openai/clip-vit-base-patch32",
        "openai/clip-vit-base-patch32",
        "clip",
        512,
        ("en",),
        "OpenAI CLIP ViT-B/32: the fast default, 224 px",
    ),
    RegistryEntry(
        "openai/clip-vit-base-patch16",
        "openai/clip-vit-base-patch16",
        "clip",
        512,
        ("en",),
        "OpenAI CLIP ViT-B/16: more accurate than B/32, about 4x the image compute",
    ),
    RegistryEntry(
        "openai/clip-vit-large-patch14",
        "openai/clip-vit-large-patch14",
        "clip",
        768,
        ("en",),
        "OpenAI CLIP ViT-L/14: the most accurate OpenAI CLIP here, slow on CPU",
    ),
    RegistryEntry(
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        "clip",
        512,
        ("en",),
        "OpenCLIP ViT-B/32 trained on LAION-2B: B/32 speed, better zero-shot accuracy",
    ),
    RegistryEntry(
        "OFA-Sys/chinese-clip-vit-base-patch16",
        "OFA-Sys/chinese-clip-vit-base-patch16",
        "chinese_clip",
        512,
        ("zh", "en"),
        "Chinese CLIP ViT-B/16: Chinese (and some English) text queries",
    ),
    RegistryEntry(
        "google/siglip-base-patch16-224",
        "google/siglip-base-patch16-224",
        "siglip",
        768,
        ("en",),
        "SigLIP ViT-B/16 224 px: sigmoid-loss CLIP, calibrated scores",
    ),
)
_BY_NAME = {entry.name.lower(): entry for entry in _BUILTINS}

_FAMILIES: dict[str, Family] = {"clip": "clip", "chinese_clip": "chinese_clip", "siglip": "siglip"}
_DEFAULT_LANGUAGES: dict[str, tuple[str, ...]] = {"clip": ("en",), "chinese_clip": ("zh", "en"), "siglip": ("en",)}

# What a checkpoint directory needs; everything else in a hub repo (other frameworks' weights, open_clip
# files, pytorch_model.bin when safetensors exist) is left on the hub.
_CONFIG_FILES = ["config.json", "preprocessor_config.json", "processor_config.json", SPEC_FILENAME]
_TOKENIZER_FILES = [
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
_SAFETENSORS_FILES = ["model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"]
_TORCH_BIN_FILES = ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"]

_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_MIB = 1 << 20


def list_models() -> list[RegistryEntry]:
    """The built-in models, default first."""
    return list(_BUILTINS)


def get_entry(name: str) -> RegistryEntry | None:
    """The built-in entry called ``name`` (case-insensitive), or ``None``."""
    return _BY_NAME.get(name.strip().lower())


def slug(name: str) -> str:
    """``"openai/clip-vit-base-patch32"`` -> ``"openai-clip-vit-base-patch32"`` (safe in file names)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"


# -- checkpoint files --------------------------------------------------------------------------------------
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


def _weight_files(directory: Path) -> list[Path]:
    """The weight files of a checkpoint (safetensors preferred), in a stable order."""
    for single, index in (
        ("model.safetensors", "model.safetensors.index.json"),
        ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    ):
        if (directory / single).is_file():
            return [directory / single]
        if (directory / index).is_file():
            weight_map = _read_json(directory / index).get("weight_map", {})
            return [directory / name for name in sorted(set(weight_map.values()))]
    return []


def _configs_digest(directory: Path) -> Any:
    """A sha256 object primed with ``config.json`` and ``preprocessor_config.json`` (name and bytes)."""
    digest = hashlib.sha256()
    for name in ("config.json", "preprocessor_config.json"):
        path = directory / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest


def _require_weights(directory: Path) -> list[Path]:
    weights = _weight_files(directory)
    if not weights:
        raise ModelNotFoundError(
            f"{directory} has no weights (expected model.safetensors or pytorch_model.bin); "
            "re-download the model or pass the directory it was saved to"
        )
    return weights


def fingerprint(directory: str | Path) -> str:
    """sha256 hex of a checkpoint's identity: its configs and the full content of every weight file.

    Hashes ``config.json`` and ``preprocessor_config.json`` bytes and, per weight file, its name, size and
    content sha256 (``digests.file_sha256``: free for a Hugging Face snapshot, else computed once per file
    version and cached), so checkpoints that differ in any weight get different fingerprints.
    """
    from glimpse.digests import file_sha256

    directory = Path(directory)
    digest = _configs_digest(directory)
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


def _safetensors_scalar(directory: Path, tensor: str) -> float | None:
    """Read one scalar tensor from the checkpoint's safetensors without torch; ``None`` if not there.

    The format is an 8-byte little-endian header length, a JSON header (dtype, shape, data offsets), then
    the raw data, so reading a scalar costs two small reads.
    """
    candidates = [directory / "model.safetensors"]
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

    Defaults for missing keys are the family's processor class defaults (CLIP/ChineseCLIP: shortest edge
    224 + center crop 224, OpenAI mean/std; SigLIP: 224x224 squash, mean/std 0.5; all bicubic).
    """
    siglip = family == "siglip"
    if config.get("do_resize", True) is False:
        raise ModelError("preprocessor_config.json has do_resize=false; glimpse needs a fixed input size")
    size = config.get("size", {"height": 224, "width": 224} if siglip else {"shortest_edge": 224})
    if isinstance(size, dict) and "longest_edge" in size:
        raise ModelError(f"unsupported resize {size!r} (longest_edge) in preprocessor_config.json")
    # An int size means the shortest edge for these processors (their default_to_square is False).
    shortest = isinstance(size, int) or (isinstance(size, dict) and "shortest_edge" in size)
    crop = bool(config.get("do_center_crop", not siglip))
    mean = tuple(float(x) for x in config.get("image_mean", (0.5,) * 3 if siglip else OPENAI_MEAN))
    std = tuple(float(x) for x in config.get("image_std", (0.5,) * 3 if siglip else OPENAI_STD))
    if not config.get("do_normalize", True):
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    rescale = float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0
    resample = config.get("resample", 3)
    interpolation = _PIL_RESAMPLE.get(resample) if isinstance(resample, int) else None
    if interpolation is None:
        raise ModelError(f"unsupported resample {resample!r} in preprocessor_config.json (expected 0-5)")
    if len(mean) != 3 or len(std) != 3:
        raise ModelError(f"image_mean/image_std must have 3 values, found {mean} / {std}")
    common: dict[str, Any] = {"interpolation": interpolation, "mean": mean, "std": std, "rescale": rescale}

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


def spec_from_checkpoint(directory: str | Path, name: str | None = None) -> ModelSpec:
    """Build the ``ModelSpec`` of a transformers checkpoint directory from its own files.

    ``name`` is the user-facing name (a registry name or hub repo id); without it the directory name is
    used. The key is ``f"{slug(name)}-{fingerprint[:10]}"``, so it changes when the weights change.
    """
    directory = Path(directory).expanduser().resolve()
    config = _read_json(directory / "config.json")
    model_type = config.get("model_type")
    family = _FAMILIES.get(str(model_type))
    if family is None:
        raise ModelError(
            f"{directory} holds a {model_type!r} model; glimpse supports model_type "
            f"{sorted(_FAMILIES)} (CLIPModel, ChineseCLIPModel, SiglipModel checkpoints)"
        )
    text = config.get("text_config") or {}
    vision = config.get("vision_config") or {}
    entry = get_entry(name) if name else None
    name = entry.name if entry else (name or directory.name)

    if family == "siglip":
        # SigLIP has no projection: the image embedding is the vision head's output (vision hidden size).
        dim = int(vision.get("hidden_size", 768))
        context_length = int(text.get("max_position_embeddings", 64))
        padding = "max_length"  # SigLIP pools the last position, so it was trained on fixed-length text
        default_scale, default_bias = config.get("logit_scale_init_value", math.log(10)), -10.0
        default_bias = float(config.get("logit_bias_init_value", default_bias))
    else:
        dim = int(config.get("projection_dim", 512))
        context_length = int(text.get("max_position_embeddings", 77))
        padding = "longest"
        default_scale, default_bias = config.get("logit_scale_init_value", 2.6592), None
    tokenizer_limit = _tokenizer_max_length(directory)
    if tokenizer_limit:
        context_length = min(context_length, tokenizer_limit)

    # logit_scale is stored as a log; the weights hold the trained value, the config only the init value.
    log_scale = _safetensors_scalar(directory, "logit_scale")
    logit_scale = math.exp(log_scale if log_scale is not None else float(default_scale))
    logit_bias: float | None = None
    if family == "siglip":
        bias = _safetensors_scalar(directory, "logit_bias")
        logit_bias = bias if bias is not None else default_bias

    pre_path = directory / "preprocessor_config.json"
    processor = _read_json(pre_path) if pre_path.is_file() else {}
    preprocess = preprocess_from_processor(processor, family)

    extra: dict[str, Any] = {}
    if entry or ("/" in name and not Path(name).exists()):
        extra["repo_id"] = entry.repo_id if entry else name
    return ModelSpec(
        name=name,
        key=f"{slug(name)}-{fingerprint(directory)[:10]}",
        family=family,
        source=str(directory),
        preprocess=preprocess,
        dim=dim,
        context_length=context_length,
        runtime="torch",
        revision=(entry.revision if entry else None) or _hub_revision(directory),
        languages=entry.languages if entry else _DEFAULT_LANGUAGES[family],
        logit_scale=logit_scale,
        logit_bias=logit_bias,
        text_padding=padding,
        extra=extra,
    )


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
        if spec.runtime == "torch" and _is_checkpoint(source):
            return f"{slug(spec.name)}-{legacy_fingerprint(source)[:10]}"
        if spec.runtime == "onnx" and (spec.extra.get("onnx") or {}).get("layout") == "immich" \
                and is_immich_dir(source):
            return f"{slug(spec.name)}-{immich_legacy_fingerprint(source)[:10]}"
    except (ModelError, OSError):
        return None
    recorded = (spec.extra.get("exported_from") or {}).get("legacy_key")
    return recorded if isinstance(recorded, str) and recorded != spec.key else None


# -- resolving names -----------------------------------------------------------------------------------
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE), read now: huggingface_hub reads it only at import."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - a core dependency
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _cache_dir() -> str | None:
    """The hub cache per HF_HUB_CACHE / HF_HOME as set now (``None``: huggingface_hub's default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]).expanduser() / "hub")
    return None


def _is_checkpoint(directory: Path) -> bool:
    return (directory / "config.json").is_file() and bool(_weight_files(directory))


def _how_to_get(repo_id: str) -> str:
    return (
        f"To use it offline: on a connected machine run `huggingface-cli download {repo_id}` "
        f"(or `hf download {repo_id}`), then either copy its cache folder here and set HF_HOME to it, "
        f"or copy the downloaded model directory and pass `--model DIR`."
    )


def resolve_model_dir(name_or_path: str) -> Path:
    """The local checkpoint directory for a directory path, a built-in name or a hub repo id.

    Order: an existing local directory; the Hugging Face cache; a download of only the needed files
    (config, safetensors weights (``pytorch_model.bin`` only when a repo has none), tokenizer and
    preprocessor files). No network is tried when HF_HUB_OFFLINE=1. Raises ``ModelNotFoundError``.
    """
    text = str(name_or_path).strip()
    local = Path(text).expanduser()
    if local.is_dir():
        from glimpse.encoders.immich import is_immich_dir

        if not (_is_checkpoint(local) or (local / SPEC_FILENAME).is_file() or is_immich_dir(local)):
            raise ModelNotFoundError(
                f"{local} is a directory but not a model checkpoint (expected config.json and "
                "model.safetensors, or spec.json); pass a directory saved with save_pretrained or "
                "`glimpse export`"
            )
        return local.resolve()
    entry = get_entry(text)
    if entry is None and (not _REPO_ID.match(text) or local.exists() or text.startswith((".", "/", "~"))):
        builtins = ", ".join(e.name for e in _BUILTINS)
        raise ModelNotFoundError(
            f"model {text!r} is neither a local model directory nor a hub repo id (owner/name); "
            f"built-in models: {builtins} (see `glimpse models list`)"
        )
    repo_id = entry.repo_id if entry else text
    revision = entry.revision if entry else None

    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ModelError("huggingface_hub is not installed; pip install huggingface_hub") from exc

    patterns = _CONFIG_FILES + _TOKENIZER_FILES
    cache_dir = _cache_dir()
    # Any cache miss (not cached, partial snapshot, unknown revision) falls through to the download.
    with contextlib.suppress(Exception):
        cached = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=patterns + _SAFETENSORS_FILES + _TORCH_BIN_FILES,
                cache_dir=cache_dir,
                local_files_only=True,
            )
        )
        if _is_checkpoint(cached):
            return cached
    if _offline():
        raise ModelNotFoundError(
            f"model {repo_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids "
            f"downloading it. {_how_to_get(repo_id)}"
        )
    try:
        folder = Path(
            snapshot_download(
                repo_id, revision=revision, allow_patterns=patterns + _SAFETENSORS_FILES, cache_dir=cache_dir
            )
        )
        if not _weight_files(folder):
            # Older repos ship only PyTorch pickles; fetch those rather than fail.
            folder = Path(
                snapshot_download(
                    repo_id, revision=revision, allow_patterns=patterns + _TORCH_BIN_FILES, cache_dir=cache_dir
                )
            )
    except Exception as exc:
        raise ModelNotFoundError(
            f"could not download model {repo_id!r} ({type(exc).__name__}: {exc}). {_how_to_get(repo_id)}"
        ) from exc
    if not _is_checkpoint(folder):
        raise ModelNotFoundError(
            f"hub repo {repo_id!r} has no transformers checkpoint (config.json + model weights); "
            "glimpse loads CLIPModel, ChineseCLIPModel and SiglipModel checkpoints"
        )
    return folder


def load_spec(name_or_path: str) -> ModelSpec:
    """The spec of a model: its ``spec.json`` when the directory has one, else built from the checkpoint."""
    directory = resolve_model_dir(name_or_path)
    if (directory / SPEC_FILENAME).is_file():
        # The directory may have been copied from elsewhere: the weights are where spec.json is now.
        return replace(ModelSpec.load(directory), source=str(directory))
    from glimpse.encoders.immich import immich_spec, is_immich_dir

    if is_immich_dir(directory):  # an ONNX model as the immich community publishes them
        return immich_spec(directory, name=str(name_or_path))
    is_local = Path(str(name_or_path)).expanduser().is_dir()
    return spec_from_checkpoint(directory, name=None if is_local else str(name_or_path))


def checkpoint_dir(spec: ModelSpec) -> Path:
    """Where the weights of ``spec`` are: ``spec.source`` when it is a directory, else resolved by name."""
    source = Path(spec.source).expanduser()
    if source.is_dir():
        return source
    return resolve_model_dir(str(spec.extra.get("repo_id") or spec.name))


def load_encoder(name_or_path_or_spec: str | Path | ModelSpec, *, device: str = "cpu", batch_size: int = 32) -> Encoder:
    """An ``Encoder`` for a model name, checkpoint directory or ``ModelSpec``, on the spec's runtime."""
    spec = name_or_path_or_spec
    if not isinstance(spec, ModelSpec):
        spec = load_spec(str(spec))
    if batch_size < 1:
        raise ModelError(f"batch_size must be at least 1, got {batch_size}")
    if spec.runtime == "torch":
        from glimpse.encoders.torch import TorchEncoder

        return TorchEncoder(spec, checkpoint_dir(spec), device=device, batch_size=batch_size)
    if spec.runtime == "onnx":
        from glimpse.encoders.onnx import OnnxEncoder

        return OnnxEncoder(spec, checkpoint_dir(spec), device=device, batch_size=batch_size)
    raise ModelError(f"model {spec.name!r} has unknown runtime {spec.runtime!r}; expected 'torch' or 'onnx'")
