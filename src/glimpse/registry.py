"""The name registry: built-in model names, and a name or path -> a local checkpoint -> spec and encoder.

The curated registry (``list_models``: real models as people run them, immich's ONNX repos first, the default
torch-free) and resolution: ``resolve_model_dir`` turns a name or a path into a local model directory (local
directory, then the Hugging Face cache, then a download of only the files its layout needs: ``file_selection``;
``locate`` answers where a model is or would be without network); ``load_spec`` reads the spec of
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
from typing import TYPE_CHECKING, Any, Literal

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

DEFAULT_MODEL = "immich-app/ViT-B-32__openai"
"""The model of a library built without ``--model``: ONNX (immich layout), so the core install needs no torch."""

DEFAULT_TOKENIZER_REPO = "openai/clip-vit-base-patch32"
"""Where training from scratch takes its tokenizer files (the CLIP BPE, at the repo's root)."""

Runtime = Literal["onnx", "torch"]


@dataclass(frozen=True)
class RegistryEntry:
    """A curated model: ``name`` is what users type, ``repo_id`` where its files live on the hub.

    ``runtime`` says which files it is: ``"onnx"`` an immich-layout repo (``config.json``, ``visual/model.onnx``,
    ``textual/model.onnx`` + tokenizer; run by onnxruntime, no torch), ``"torch"`` a transformers checkpoint
    (the torch extra). ``size_mb`` is the approximate download (fp32 weights of both towers, 10^6 bytes);
    ``recall`` immich's published Crossmodal-3600 English retrieval recall (mean of R@1/5/10, %), ``None``
    where none is published. ``aliases`` are other names that select it (case-insensitive), e.g. immich's
    short model name.
    """

    name: str
    repo_id: str
    family: Family
    dim: int
    languages: tuple[str, ...]
    description: str
    runtime: Runtime = "torch"
    size_mb: int | None = None
    recall: float | None = None
    aliases: tuple[str, ...] = ()
    revision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples as lists)."""
        data = asdict(self)
        data["languages"] = list(self.languages)
        data["aliases"] = list(self.aliases)
        return data


def _immich(short: str, family: Family, dim: int, languages: tuple[str, ...], size_mb: int, recall: float | None,
            description: str) -> RegistryEntry:
    """An ``immich-app/<short>`` ONNX repo, also selected by its short name."""
    return RegistryEntry(f"immich-app/{short}", f"immich-app/{short}", family, dim, languages, description,
                         runtime="onnx", size_mb=size_mb, recall=recall, aliases=(short,))


_MULTI = ("multilingual",)
# immich's model list (machine-learning/immich_ml/models/constants.py in immich-app/immich) is the anchor;
# recall from its docs (docs/docs/features/searching.md, English table). Sizes: fp32 parameters x 4 bytes,
# rounded (the hub shows the exact figure; `glimpse models info` shows the installed one).
_BUILTINS: tuple[RegistryEntry, ...] = (
    _immich("ViT-B-32__openai", "clip", 512, ("en",), 605, 59.37,
            "OpenAI CLIP ViT-B/32 as ONNX: the default, torch-free, 224 px"),
    _immich("ViT-B-16__openai", "clip", 512, ("en",), 600, 58.27,
            "OpenAI CLIP ViT-B/16 as ONNX: about 4x the image compute of B/32"),
    _immich("ViT-L-14__openai", "clip", 768, ("en",), 1710, 60.12, "OpenAI CLIP ViT-L/14 as ONNX: slow on CPU"),
    _immich("ViT-B-32__laion2b-s34b-b79k", "clip", 512, ("en",), 605, 68.78,
            "OpenCLIP ViT-B/32 on LAION-2B as ONNX: B/32 speed, much better recall"),
    _immich("ViT-B-16__laion400m_e32", "clip", 512, ("en",), 600, 66.95, "OpenCLIP ViT-B/16 on LAION-400M as ONNX"),
    _immich("ViT-L-14-quickgelu__dfn2b", "clip", 768, ("en",), 1710, 72.78, "Apple DFN-2B CLIP ViT-L/14 as ONNX"),
    _immich("ViT-H-14-quickgelu__dfn5b", "clip", 1024, ("en",), 3950, 75.01, "Apple DFN-5B CLIP ViT-H/14 as ONNX"),
    _immich("ViT-H-14-378-quickgelu__dfn5b", "clip", 1024, ("en",), 3950, 75.73,
            "Apple DFN-5B CLIP ViT-H/14 at 378 px as ONNX: best English recall in immich's table"),
    _immich("ViT-B-16-SigLIP__webli", "siglip", 768, ("en",), 815, 71.64, "SigLIP ViT-B/16 224 px as ONNX"),
    _immich("ViT-B-16-SigLIP2__webli", "siglip", 768, _MULTI, 1500, 75.19,
            "SigLIP 2 ViT-B/16 as ONNX: multilingual, best recall per ms in immich's table"),
    _immich("ViT-B-32-SigLIP2-256__webli", "siglip", 768, _MULTI, 1520, 73.15,
            "SigLIP 2 ViT-B/32 256 px as ONNX: multilingual, fast image tower"),
    _immich("ViT-L-16-SigLIP2-256__webli", "siglip", 1024, _MULTI, 3520, 74.26, "SigLIP 2 ViT-L/16 256 px as ONNX"),
    _immich("ViT-SO400M-14-SigLIP2__webli", "siglip", 1152, _MULTI, 4540, 74.77,
            "SigLIP 2 So400m/14 224 px as ONNX"),
    _immich("nllb-clip-base-siglip__v1", "siglip", 768, ("flores-200",), 2030, 68.41,
            "NLLB-CLIP base (SigLIP): 201 languages (FLORES-200 codes, --lang)"),
    _immich("nllb-clip-large-siglip__v1", "siglip", 1152, ("flores-200",), 4880, 71.19,
            "NLLB-CLIP large (SigLIP): 201 languages (FLORES-200 codes, --lang)"),
    _immich("XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k", "clip", 512, _MULTI, 1470, 68.33,
            "OpenCLIP XLM-RoBERTa base + ViT-B/32 (LAION-5B) as ONNX: multilingual"),
    _immich("XLM-Roberta-Large-ViT-H-14__frozen_laion5b_s13b_b90k", "clip", 1024, _MULTI, 4770, 71.45,
            "OpenCLIP XLM-RoBERTa large + ViT-H/14 (LAION-5B) as ONNX: multilingual"),
    _immich("XLM-Roberta-Large-Vit-B-16Plus", "clip", 640, _MULTI, 2330, None,
            "M-CLIP XLM-RoBERTa large + ViT-B/16+ as ONNX: multilingual text tower (two inputs)"),
    RegistryEntry(
        "openai/clip-vit-base-patch32",
        "openai/clip-vit-base-patch32",
        "clip",
        512,
        ("en",),
        "OpenAI CLIP ViT-B/32 (transformers; torch extra): 224 px",
        size_mb=605,
        recall=59.37,
    ),
    RegistryEntry(
        "openai/clip-vit-base-patch16",
        "openai/clip-vit-base-patch16",
        "clip",
        512,
        ("en",),
        "OpenAI CLIP ViT-B/16 (transformers; torch extra): more accurate than B/32, about 4x the image compute",
        size_mb=600,
        recall=58.27,
    ),
    RegistryEntry(
        "openai/clip-vit-large-patch14",
        "openai/clip-vit-large-patch14",
        "clip",
        768,
        ("en",),
        "OpenAI CLIP ViT-L/14 (transformers; torch extra): slow on CPU",
        size_mb=1710,
        recall=60.12,
    ),
    RegistryEntry(
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        "clip",
        512,
        ("en",),
        "OpenCLIP ViT-B/32 trained on LAION-2B (transformers; torch extra): better zero-shot accuracy",
        size_mb=605,
        recall=68.78,
    ),
    RegistryEntry(
        "OFA-Sys/chinese-clip-vit-base-patch16",
        "OFA-Sys/chinese-clip-vit-base-patch16",
        "chinese_clip",
        512,
        ("zh", "en"),
        "Chinese CLIP ViT-B/16 (transformers; torch extra): Chinese (and some English) text queries",
        size_mb=753,
    ),
    RegistryEntry(
        "google/siglip-base-patch16-224",
        "google/siglip-base-patch16-224",
        "siglip",
        768,
        ("en",),
        "SigLIP ViT-B/16 224 px (transformers; torch extra): sigmoid-loss CLIP, calibrated scores",
        size_mb=813,
        recall=71.64,
    ),
)
_BY_NAME = {alias.lower(): entry for entry in _BUILTINS for alias in (entry.name, *entry.aliases)}


def list_models() -> list[RegistryEntry]:
    """The curated models, default first."""
    return list(_BUILTINS)


def get_entry(name: str) -> RegistryEntry | None:
    """The curated entry called ``name`` or one of its aliases (case-insensitive), or ``None``."""
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


# -- which files, where --------------------------------------------------------------------------------
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# Organisations whose repos are immich-layout ONNX models (any repo there, listed here or not).
_ONNX_ORGS = frozenset({"immich-app"})


@dataclass(frozen=True)
class FileSelection:
    """The files of a hub repo that glimpse fetches: huggingface_hub ``allow_patterns`` / ``ignore_patterns``
    (fnmatch: ``*`` also matches ``/``)."""

    allow: tuple[str, ...]
    ignore: tuple[str, ...] = ()

    def cli_flags(self) -> str:
        """The same selection as ``huggingface-cli download`` flags."""
        flags = " --include " + " ".join(f"'{p}'" for p in self.allow)
        return flags + (" --exclude " + " ".join(f"'{p}'" for p in self.ignore) if self.ignore else "")


# immich repos hold the two fp32 towers (a big tower's external data as loose files beside model.onnx: tensor
# names, Constant_*, uuids) and, in sub-folders, exports for other runtimes (armnn/, rknpu/<soc>/, fp16/):
# everything directly in visual/ and textual/, nothing below them.
ONNX_FILES = FileSelection(("config.json", "visual/*", "textual/*"),
                           ("visual/*/*", "textual/*/*", "*.armnn", "*.rknn", "*.md"))
TORCH_FILES = FileSelection(tuple(CONFIG_FILES + TOKENIZER_FILES + SAFETENSORS_FILES))
# Older transformers repos ship only PyTorch pickles: fetched only when a repo has no safetensors.
TORCH_BIN_FALLBACK = FileSelection(tuple(CONFIG_FILES + TOKENIZER_FILES + TORCH_BIN_FILES))
# An open_clip checkpoint (LAION, DataComp, DFN, MetaCLIP repos without transformers weights): its config, one
# weight file (safetensors preferred) and the tokenizer files some of them ship; loaded by key mapping.
OPEN_CLIP_FILES = FileSelection(("open_clip_config.json", "open_clip_model.safetensors", *TOKENIZER_FILES))
OPEN_CLIP_BIN_FALLBACK = FileSelection(("open_clip_config.json", "open_clip_pytorch_model.bin", *TOKENIZER_FILES))
_OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_ONNX_REQUIRED = ("config.json", "visual/model.onnx", "textual/model.onnx", "textual/tokenizer.json")


def file_selection(runtime: Runtime) -> FileSelection:
    """What a download of a model of ``runtime`` fetches (torch: safetensors; see ``TORCH_BIN_FALLBACK``)."""
    return ONNX_FILES if runtime == "onnx" else TORCH_FILES


def runtime_of_repo(repo_id: str) -> Runtime:
    """The layout a hub repo is expected in: its curated entry's, ``"onnx"`` for immich's organisation, else
    ``"torch"`` (a transformers checkpoint)."""
    entry = get_entry(repo_id)
    if entry is not None:
        return entry.runtime
    return "onnx" if repo_id.split("/", 1)[0].lower() in _ONNX_ORGS else "torch"


def is_complete(directory: Path, runtime: Runtime | None = None) -> bool:
    """True when ``directory`` holds every file a model of ``runtime`` needs (``None``: either layout).

    Snapshot files are symlinks into the cache's blobs: a dangling one (blob gone) counts as missing."""
    if runtime in (None, "onnx") and not missing_files(directory, "onnx"):
        return True
    return runtime in (None, "torch") and (is_checkpoint(directory) or is_open_clip_dir(directory))


def missing_files(directory: Path, runtime: Runtime) -> list[str]:
    """The required files of a model of ``runtime`` that ``directory`` lacks (torch: config and weights)."""
    if runtime == "onnx":
        return [name for name in _ONNX_REQUIRED if not (directory / name).is_file()]
    if is_open_clip_dir(directory):
        return []
    missing = [] if (directory / "config.json").is_file() else ["config.json"]
    return missing + ([] if weight_files(directory) else ["model.safetensors (or pytorch_model.bin)"])


def is_open_clip_dir(directory: Path) -> bool:
    """True when ``directory`` holds an open_clip checkpoint (``open_clip_config.json`` and its weights)."""
    return (directory / "open_clip_config.json").is_file() and any(
        (directory / name).is_file() for name in _OPEN_CLIP_WEIGHTS)


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


def hub_cache_path() -> Path:
    """The hub cache folder as huggingface_hub computes it (HF_HUB_CACHE, HF_HOME/hub,
    $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub), without importing it."""
    explicit = hub_cache_dir() or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return cache / "huggingface" / "hub"


def repo_cache_folder(repo_id: str) -> Path:
    """Where huggingface_hub keeps ``repo_id``: ``<cache>/models--<org>--<name>``."""
    return hub_cache_path() / ("models--" + repo_id.replace("/", "--"))


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The cache's snapshot folder of ``repo_id`` at ``revision`` (a branch/tag via ``refs/``, or a commit),
    complete or not; ``None`` when the cache holds no such snapshot. Reads the cache layout directly (no
    huggingface_hub import: ``models list`` checks every entry)."""
    folder = repo_cache_folder(repo_id)
    ref = folder / "refs" / (revision or "main")
    commit: str | None = None
    if ref.is_file():
        with contextlib.suppress(OSError):
            commit = ref.read_text(encoding="utf-8").strip()
    elif revision and _COMMIT.match(revision):
        commit = revision
    if not commit:
        return None
    snapshot = folder / "snapshots" / commit
    return snapshot if snapshot.is_dir() else None


@dataclass(frozen=True)
class ModelLocation:
    """Where a model name points: ``repo_id`` on the hub in ``runtime``'s layout (``entry`` when curated), its
    cache folder, and ``directory`` when a complete copy is on this machine (a local directory or the cache)."""

    name: str
    repo_id: str | None
    runtime: Runtime | None
    entry: RegistryEntry | None
    cache_folder: Path | None
    directory: Path | None
    missing: tuple[str, ...] = ()

    @property
    def installed(self) -> bool:
        """A complete copy is here: nothing to download."""
        return self.directory is not None


def _bad_name(text: str) -> ModelNotFoundError:
    names = ", ".join(e.name for e in _BUILTINS)
    return ModelNotFoundError(
        f"model {text!r} is neither a local model directory nor a hub repo id (owner/name); "
        f"curated models: {names} (built-in models: see `glimpse models list`)"
    )


def locate(name_or_path: str) -> ModelLocation:
    """Where ``name_or_path`` is or would be, without network: a local directory, or a curated name / hub repo
    id looked up in the Hugging Face cache. Raises ``ModelNotFoundError`` for a name that can be neither."""
    text = str(name_or_path).strip()
    local = Path(text).expanduser()
    if local.is_dir():
        return ModelLocation(text, None, None, None, None, local.resolve())
    entry = get_entry(text)
    if entry is None and (not _REPO_ID.match(text) or local.exists() or text.startswith((".", "/", "~"))):
        raise _bad_name(text)
    repo_id = entry.repo_id if entry else text
    runtime = entry.runtime if entry else runtime_of_repo(repo_id)
    snapshot = cached_snapshot(repo_id, entry.revision if entry else None)
    # A repo outside the registry may be either layout: whichever is complete in the cache counts.
    complete = snapshot is not None and is_complete(snapshot, runtime if entry or runtime == "onnx" else None)
    missing = () if complete or snapshot is None else tuple(missing_files(snapshot, runtime))
    return ModelLocation(text, repo_id, runtime, entry, repo_cache_folder(repo_id),
                         snapshot if complete else None, missing)


def how_to_get(location: ModelLocation) -> str:
    """The sentence telling a user exactly what to fetch (repo, files, target folder) to use a model offline."""
    repo_id, runtime = location.repo_id or location.name, location.runtime or "torch"
    selection = file_selection(runtime)
    return (
        f"To get it: on a machine with network access run `glimpse models download {location.name}` (or "
        f"`huggingface-cli download {repo_id}{selection.cli_flags()}`), which fetches only those files into "
        f"{location.cache_folder}; copy that folder to the same place here (or set HF_HOME / HF_HUB_CACHE to "
        f"the cache that holds it, and keep HF_HUB_OFFLINE=1 if this machine has no network), or copy the "
        f"downloaded model directory and pass `--model DIR`."
    )


def _offline_error(location: ModelLocation) -> ModelNotFoundError:
    if location.missing:
        state = (f"is only partly in the local Hugging Face cache ({location.cache_folder} lacks "
                 f"{', '.join(location.missing)})")
    else:
        state = f"is not in the local Hugging Face cache ({location.cache_folder})"
    return ModelNotFoundError(f"model {location.repo_id!r} {state} and HF_HUB_OFFLINE=1 forbids downloading it. "
                              f"{how_to_get(location)}")


def download_model(name: str) -> Path:
    """Fetch ``name`` (a curated name or hub repo id) into the Hugging Face cache now, only the files its layout
    needs (``file_selection``), and return the snapshot directory. huggingface_hub shows a progress bar per file
    on stderr and resumes an interrupted download. Raises ``ModelNotFoundError`` offline, on a network
    failure, or when the repo lacks the layout's files."""
    location = locate(name)
    if location.repo_id is None:
        raise ModelError(f"{name} is a local directory; there is nothing to download")
    if hub_offline():
        raise _offline_error(location)
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ModelError("huggingface_hub is not installed; pip install huggingface_hub") from exc
    runtime = location.runtime or "torch"
    revision = location.entry.revision if location.entry else None

    def fetch(selection: FileSelection) -> Path:
        return Path(snapshot_download(location.repo_id, revision=revision, allow_patterns=list(selection.allow),
                                      ignore_patterns=list(selection.ignore) or None, cache_dir=hub_cache_dir()))

    try:
        folder = fetch(file_selection(runtime))
        # A repo without transformers safetensors: its PyTorch pickles, else its open_clip checkpoint.
        for fallback in (TORCH_BIN_FALLBACK, OPEN_CLIP_FILES, OPEN_CLIP_BIN_FALLBACK):
            if runtime != "torch" or weight_files(folder) or is_open_clip_dir(folder):
                break
            folder = fetch(fallback)
    except Exception as exc:
        raise ModelNotFoundError(
            f"could not download model {location.repo_id!r} ({type(exc).__name__}: {exc}). {how_to_get(location)}"
        ) from exc
    missing = missing_files(folder, runtime)
    if missing:
        what = ("an immich-layout ONNX model (config.json, visual/model.onnx, textual/model.onnx + tokenizer)"
                if runtime == "onnx" else
                f"a transformers checkpoint (config.json + model weights) of {', '.join(model_classes())}")
        raise ModelNotFoundError(f"hub repo {location.repo_id!r} is not {what}: it lacks {', '.join(missing)}")
    return folder


def resolve_model_dir(name_or_path: str) -> Path:
    """The local model directory for a directory path, a curated name or a hub repo id.

    Order: an existing local directory; a complete snapshot in the Hugging Face cache; a download of only the
    files the repo's layout needs (``download_model``). No network is tried when HF_HUB_OFFLINE=1: the error
    then says what to fetch where. Raises ``ModelNotFoundError``.
    """
    location = locate(name_or_path)
    if location.repo_id is None:  # a local directory
        local = location.directory
        assert local is not None
        from glimpse.encoders.immich import is_immich_dir

        if not (is_checkpoint(local) or (local / SPEC_FILENAME).is_file() or is_immich_dir(local)
                or is_open_clip_dir(local)):
            raise ModelNotFoundError(
                f"{local} is a directory but not a model checkpoint (expected config.json and "
                "model.safetensors, spec.json, an immich layout: config.json, visual/model.onnx, "
                "textual/model.onnx, or open_clip_config.json with its weights); pass a directory saved with "
                "save_pretrained or `glimpse export`"
            )
        return local
    if location.directory is not None:
        return location.directory
    return download_model(location.name)


def load_spec(name_or_path: str) -> ModelSpec:
    """The spec of a model: its ``spec.json`` when the directory has one, else built from the checkpoint."""
    directory = resolve_model_dir(name_or_path)
    if (directory / SPEC_FILENAME).is_file():
        # The directory may have been copied from elsewhere: the weights are where spec.json is now.
        return replace(ModelSpec.load(directory), source=str(directory))
    from glimpse.encoders.immich import immich_spec, is_immich_dir

    is_local = Path(str(name_or_path)).expanduser().is_dir()
    entry = None if is_local else get_entry(str(name_or_path))
    name = entry.name if entry else str(name_or_path)  # an alias names the curated model by its one name
    if is_immich_dir(directory):  # an ONNX model as the immich community publishes them
        return immich_spec(directory, name=name)
    return spec_from_checkpoint(directory, name=None if is_local else name)


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
