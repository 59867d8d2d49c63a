"""The name registry: built-in model names, and a name or path -> a local checkpoint -> spec and encoder.

``resolve_model_dir`` turns a name or a path into a local model directory (local directory, then the
Hugging Face cache, then a download of only the files glimpse needs); ``load_spec`` reads the spec of
what it finds (an exported ``spec.json``, an immich ONNX directory, or a transformers checkpoint read by
``glimpse.checkpoints``) and ``load_encoder`` builds the encoder of the spec's runtime.

Importing this module imports neither torch nor transformers (``glimpse search`` must stay light); the
torch backend is imported inside ``load_encoder``.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glimpse.checkpoints import (
    CONFIG_FILES,
    SAFETENSORS_FILES,
    TOKENIZER_FILES,
    TORCH_BIN_FILES,
    is_checkpoint,
    read_checkpoint,
    weight_files,
)
from glimpse.errors import ModelError, ModelNotFoundError
from glimpse.families import model_classes
from glimpse.spec import SPEC_FILENAME, Family, ModelSpec

if TYPE_CHECKING:
    from glimpse.encoders.base import Encoder

DEFAULT_MODEL = "openai/clip-vit-base-patch32"


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


def list_models() -> list[RegistryEntry]:
    """The built-in models, default first."""
    return list(_BUILTINS)


def get_entry(name: str) -> RegistryEntry | None:
    """The built-in entry called ``name`` (case-insensitive), or ``None``."""
    return _BY_NAME.get(name.strip().lower())


def spec_from_checkpoint(directory: str | Path, name: str | None = None) -> ModelSpec:
    """The ``ModelSpec`` of a transformers checkpoint directory (``checkpoints.read_checkpoint``).

    ``name`` is the user-facing name: a built-in name (its entry gives the canonical name, repo id, revision
    and languages) or a hub repo id; without it the directory name is used.
    """
    entry = get_entry(name) if name else None
    if entry is None:
        return read_checkpoint(directory, name)
    return read_checkpoint(directory, entry.name, repo_id=entry.repo_id, revision=entry.revision,
                           languages=entry.languages)


# -- resolving names -----------------------------------------------------------------------------------
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE), read now: huggingface_hub reads it only at import."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - a core dependency
        return False
    return bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> str | None:
    """The hub cache per HF_HUB_CACHE / HF_HOME as set now (``None``: huggingface_hub's default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]).expanduser() / "hub")
    return None


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

        if not (is_checkpoint(local) or (local / SPEC_FILENAME).is_file() or is_immich_dir(local)):
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

    patterns = CONFIG_FILES + TOKENIZER_FILES
    cache_dir = hub_cache_dir()
    # Any cache miss (not cached, partial snapshot, unknown revision) falls through to the download.
    with contextlib.suppress(Exception):
        cached = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=patterns + SAFETENSORS_FILES + TORCH_BIN_FILES,
                cache_dir=cache_dir,
                local_files_only=True,
            )
        )
        if is_checkpoint(cached):
            return cached
    if hub_offline():
        raise ModelNotFoundError(
            f"model {repo_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids "
            f"downloading it. {_how_to_get(repo_id)}"
        )
    try:
        folder = Path(
            snapshot_download(
                repo_id, revision=revision, allow_patterns=patterns + SAFETENSORS_FILES, cache_dir=cache_dir
            )
        )
        if not weight_files(folder):
            # Older repos ship only PyTorch pickles; fetch those rather than fail.
            folder = Path(
                snapshot_download(
                    repo_id, revision=revision, allow_patterns=patterns + TORCH_BIN_FILES, cache_dir=cache_dir
                )
            )
    except Exception as exc:
        raise ModelNotFoundError(
            f"could not download model {repo_id!r} ({type(exc).__name__}: {exc}). {_how_to_get(repo_id)}"
        ) from exc
    if not is_checkpoint(folder):
        raise ModelNotFoundError(
            f"hub repo {repo_id!r} has no transformers checkpoint (config.json + model weights); "
            f"glimpse loads {', '.join(model_classes())} checkpoints"
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
