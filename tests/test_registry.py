"""The curated registry, file selection per layout and resolution against a fake Hugging Face cache (no network:
huggingface_hub's download function is replaced by one that records what would be fetched)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from glimpse.cli import app
from glimpse.errors import ModelNotFoundError
from glimpse.registry import (
    DEFAULT_MODEL,
    ONNX_FILES,
    TORCH_FILES,
    get_entry,
    list_models,
    locate,
    resolve_model_dir,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
# What immich-app/ViT-B-32__openai holds on the hub (as its exporter uploads it), plus what a big tower looks like
# with its external data as loose files (tensor names, Constant_*, uuids) beside model.onnx.
IMMICH_REMOTE = [
    ".gitattributes", "README.md", "config.json",
    "visual/model.onnx", "visual/preprocess_cfg.json", "visual/Constant_1234_attr__value",
    "visual/transformer.resblocks.0.attn.in_proj_weight", "visual/0f6c2b6e-1c1d-4b1e-9c3a-2a8f5e8b9d10",
    "visual/armnn/model.armnn", "visual/fp16/model.armnn", "visual/rknpu/rk3588/model.rknn",
    "textual/model.onnx", "textual/tokenizer.json", "textual/tokenizer_config.json",
    "textual/special_tokens_map.json", "textual/vocab.json", "textual/merges.txt",
    "textual/armnn/model.armnn", "textual/rknpu/rk3566/model.rknn",
]
TRANSFORMERS_REMOTE = [
    ".gitattributes", "README.md", "config.json", "preprocessor_config.json", "tokenizer.json", "merges.txt",
    "vocab.json", "tokenizer_config.json", "special_tokens_map.json", "model.safetensors", "pytorch_model.bin",
    "tf_model.h5", "flax_model.msgpack", "onnx/model.onnx",
]


def _selected(remote: list[str], allow, ignore) -> list[str]:
    from huggingface_hub.utils import filter_repo_objects

    return sorted(filter_repo_objects(remote, allow_patterns=allow, ignore_patterns=ignore))


def test_onnx_selection_takes_the_towers_and_skips_other_runtimes():
    chosen = _selected(IMMICH_REMOTE, list(ONNX_FILES.allow), list(ONNX_FILES.ignore))
    assert chosen == sorted([
        "config.json", "visual/model.onnx", "visual/preprocess_cfg.json", "visual/Constant_1234_attr__value",
        "visual/transformer.resblocks.0.attn.in_proj_weight", "visual/0f6c2b6e-1c1d-4b1e-9c3a-2a8f5e8b9d10",
        "textual/model.onnx", "textual/tokenizer.json", "textual/tokenizer_config.json",
        "textual/special_tokens_map.json", "textual/vocab.json", "textual/merges.txt",
    ])


def test_torch_selection_takes_safetensors_not_other_frameworks():
    chosen = _selected(TRANSFORMERS_REMOTE, list(TORCH_FILES.allow), list(TORCH_FILES.ignore) or None)
    assert chosen == sorted(["config.json", "preprocessor_config.json", "tokenizer.json", "merges.txt", "vocab.json",
                             "tokenizer_config.json", "special_tokens_map.json", "model.safetensors"])


def test_registry_anchors_on_immichs_models_and_keeps_the_builtin_names():
    entries = list_models()
    assert entries[0].name == DEFAULT_MODEL == "immich-app/ViT-B-32__openai"
    assert entries[0].runtime == "onnx" and entries[0].dim == 512 and entries[0].recall == 59.37
    names = {e.name for e in entries}
    assert {"openai/clip-vit-base-patch32", "openai/clip-vit-base-patch16", "openai/clip-vit-large-patch14",
            "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "OFA-Sys/chinese-clip-vit-base-patch16",
            "google/siglip-base-patch16-224"} <= names
    assert {"immich-app/ViT-B-16-SigLIP2__webli", "immich-app/nllb-clip-large-siglip__v1",
            "immich-app/XLM-Roberta-Large-Vit-B-16Plus"} <= names
    for entry in entries:
        assert entry.runtime == ("onnx" if entry.repo_id.startswith("immich-app/") else "torch")
        assert entry.dim > 0 and entry.languages and entry.size_mb and entry.size_mb > 0
    # immich's short names select the same entries
    assert get_entry("nllb-clip-large-siglip__v1") is get_entry("immich-app/nllb-clip-large-siglip__v1")
    assert get_entry("vit-b-32__OPENAI").name == DEFAULT_MODEL


# -- a fake Hugging Face cache ---------------------------------------------------------------------------
def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def fake_cached_repo(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = COMMIT) -> Path:
    """``repo_id`` in huggingface_hub's cache layout: blobs, snapshots/COMMIT/<file> symlinks, refs/main."""
    import hashlib

    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        _write(blob, data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(blob)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def immich_files() -> dict[str, bytes]:
    return {name: f"content of {name}".encode() for name in
            ("config.json", "visual/model.onnx", "visual/preprocess_cfg.json", "textual/model.onnx",
             "textual/tokenizer.json")}


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_default_resolves_from_the_cache_offline(hub):
    snapshot = fake_cached_repo(hub, DEFAULT_MODEL, immich_files())
    assert resolve_model_dir(DEFAULT_MODEL) == snapshot
    assert resolve_model_dir("ViT-B-32__openai") == snapshot
    location = locate(DEFAULT_MODEL)
    assert location.installed and location.runtime == "onnx"
    assert location.cache_folder == hub / "models--immich-app--ViT-B-32__openai"


def test_half_downloaded_model_says_what_is_missing_where(hub):
    files = immich_files()
    del files["textual/model.onnx"]
    fake_cached_repo(hub, DEFAULT_MODEL, files)
    # a blob deleted under its symlink (a cache cleaned by hand) is missing too
    for blob in (hub / "models--immich-app--ViT-B-32__openai" / "blobs").iterdir():
        if blob.read_bytes() == b"content of textual/tokenizer.json":
            blob.unlink()
    assert not locate(DEFAULT_MODEL).installed
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model_dir(DEFAULT_MODEL)
    message = str(info.value)
    assert "textual/model.onnx, textual/tokenizer.json" in message and "partly" in message
    assert "HF_HUB_OFFLINE=1" in message and str(hub / "models--immich-app--ViT-B-32__openai") in message
    assert "huggingface-cli download immich-app/ViT-B-32__openai --include 'config.json' 'visual/*'" in message
    assert "--exclude 'visual/*/*'" in message and "--model DIR" in message


def test_offline_miss_names_repo_files_and_target(hub):
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model_dir("immich-app/ViT-B-16-SigLIP2__webli")
    message = str(info.value)
    assert "not in the local Hugging Face cache" in message
    assert f"into {hub / 'models--immich-app--ViT-B-16-SigLIP2__webli'}" in message
    assert "glimpse models download immich-app/ViT-B-16-SigLIP2__webli" in message


class RecordingHub:
    """Stands in for ``huggingface_hub.snapshot_download``: records each call and 'downloads' the selected
    files of ``remote`` into the fake cache."""

    def __init__(self, cache: Path, remote: dict[str, list[str]]) -> None:
        self.cache, self.remote, self.calls = cache, remote, []

    def __call__(self, repo_id, *, revision=None, allow_patterns=None, ignore_patterns=None, cache_dir=None,
                 local_files_only=False, **kwargs):
        assert not local_files_only
        self.calls.append({"repo_id": repo_id, "allow": allow_patterns, "ignore": ignore_patterns,
                           "cache_dir": cache_dir})
        chosen = _selected(self.remote[repo_id], allow_patterns, ignore_patterns)
        return str(fake_cached_repo(Path(cache_dir), repo_id, {n: f"content of {n}".encode() for n in chosen}))

    def fetched(self) -> list[str]:
        snapshot = self.cache / ("models--" + self.calls[-1]["repo_id"].replace("/", "--")) / "snapshots" / COMMIT
        return sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())


@pytest.fixture()
def online(hub, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    recorder = RecordingHub(hub, {DEFAULT_MODEL: IMMICH_REMOTE, "someone/clip-bin-only": [
        "config.json", "tokenizer.json", "pytorch_model.bin", "tf_model.h5"]})
    monkeypatch.setattr(huggingface_hub, "snapshot_download", recorder)
    return recorder


def test_download_fetches_only_the_layouts_files(online, hub):
    folder = resolve_model_dir("ViT-B-32__openai")
    assert folder == hub / "models--immich-app--ViT-B-32__openai" / "snapshots" / COMMIT
    assert online.calls == [{"repo_id": DEFAULT_MODEL, "allow": list(ONNX_FILES.allow),
                             "ignore": list(ONNX_FILES.ignore), "cache_dir": str(hub)}]
    assert not [name for name in online.fetched() if name.endswith((".armnn", ".rknn", ".md"))]
    assert "visual/Constant_1234_attr__value" in online.fetched()  # external data comes along
    resolve_model_dir(DEFAULT_MODEL)  # now cached: no second call
    assert len(online.calls) == 1


def test_download_falls_back_to_pytorch_bin_only_when_there_are_no_safetensors(online):
    folder = resolve_model_dir("someone/clip-bin-only")
    assert len(online.calls) == 2
    assert "model.safetensors" in online.calls[0]["allow"] and "pytorch_model.bin" not in online.calls[0]["allow"]
    assert "pytorch_model.bin" in online.calls[1]["allow"]
    assert (folder / "pytorch_model.bin").is_file() and not (folder / "tf_model.h5").exists()


def test_open_clip_only_repo_fetches_its_checkpoint_and_nothing_else(online):
    online.remote["laion/openclip-only"] = [
        "README.md", "open_clip_config.json", "open_clip_model.safetensors", "open_clip_pytorch_model.bin",
        "tokenizer.json", "vocab.json", "merges.txt", "epoch_32.pt"]
    folder = resolve_model_dir("laion/openclip-only")
    assert len(online.calls) == 3  # safetensors, pickles (none), open_clip safetensors: found
    assert online.fetched() == ["merges.txt", "open_clip_config.json", "open_clip_model.safetensors",
                                "tokenizer.json", "vocab.json"]
    assert resolve_model_dir("laion/openclip-only") == folder and len(online.calls) == 3  # cached now


def test_repo_without_the_layout_is_a_clear_error(online):
    online.remote["immich-app/not-a-clip"] = ["config.json", "detection/model.onnx"]
    with pytest.raises(ModelNotFoundError, match=r"not an immich-layout ONNX model.*lacks visual/model\.onnx"):
        resolve_model_dir("immich-app/not-a-clip")


# -- the commands ----------------------------------------------------------------------------------------
def test_models_list_marks_what_is_installed(hub):
    fake_cached_repo(hub, DEFAULT_MODEL, immich_files())
    result = CliRunner().invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows[DEFAULT_MODEL]["installed"] and rows[DEFAULT_MODEL]["path"].endswith(COMMIT)
    assert not rows["immich-app/ViT-B-16-SigLIP2__webli"]["installed"]
    assert {"runtime", "dim", "size_mb", "languages", "recall", "family", "repo_id"} <= set(rows[DEFAULT_MODEL])
    table = CliRunner().invoke(app, ["models", "list"])
    assert table.exit_code == 0
    line = next(x for x in table.stdout.splitlines() if x.startswith(DEFAULT_MODEL))
    assert line.split()[1:5] == ["onnx", "512", "605", "MB"] and "yes" in line and "(default)" in line


def test_models_info_says_where_it_is_or_would_be(hub):
    result = CliRunner().invoke(app, ["models", "info", "nllb-clip-large-siglip__v1", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["name"] == "immich-app/nllb-clip-large-siglip__v1" and not info["installed"]
    assert info["cache_folder"] == str(hub / "models--immich-app--nllb-clip-large-siglip__v1")
    assert info["download"]["allow"] == list(ONNX_FILES.allow) and info["files"] == []
    fake_cached_repo(hub, DEFAULT_MODEL, immich_files())
    result = CliRunner().invoke(app, ["models", "info", DEFAULT_MODEL, "--json"])
    info = json.loads(result.stdout)
    assert info["installed"] and {f["path"] for f in info["files"]} == set(immich_files())


def test_models_download_offline_is_one_clear_line(hub):
    result = CliRunner().invoke(app, ["models", "download", "ViT-B-32__openai"])
    assert result.exit_code == 1
    assert "HF_HUB_OFFLINE=1 forbids downloading" in result.stderr and "Traceback" not in result.output


def test_models_download_fetches_now(online, hub):
    result = CliRunner().invoke(app, ["models", "download", "ViT-B-32__openai", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["path"].endswith(COMMIT) and len(online.calls) == 1
    again = CliRunner().invoke(app, ["models", "download", "ViT-B-32__openai", "--json"])
    assert json.loads(again.stdout)["already_installed"] and len(online.calls) == 1
