"""open_clip checkpoints (``open_clip_config.json`` + weights) as transformers' ``CLIPModel``, by key mapping.

A checkpoint as open_clip publishes it on the hub (LAION, DataComp, DFN, MetaCLIP)::

    open_clip_config.json        {"model_cfg": {embed_dim, quick_gelu?, vision_cfg, text_cfg}, "preprocess_cfg": {}}
    open_clip_model.safetensors  or open_clip_pytorch_model.bin: open_clip's ``CLIP`` state dict
    tokenizer.json               the CLIP BPE tokenizer (open_clip's default SimpleTokenizer) (+ tokenizer_config)

Only open_clip's plain ``CLIP`` with a ViT image tower and its default text transformer maps onto
``CLIPModel``; anything else (timm/ConvNeXt/MobileCLIP/ResNet towers, Hugging Face or "modern" text towers,
CoCa, SigLIP's attention-pool head, layer scale, qk-norm, ...) is refused with a ``ModelError`` naming the
option. The activation is the config's ``quick_gelu`` (absent: open_clip's default, exact GELU), never a
guess from the name (open_clip issue #771: the two give different embeddings from the same weights).

The config and preprocessing functions import only the standard library; ``load_clip_model`` and
``load_tokenizer`` import torch / transformers (the torch extra).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from glimpse.errors import ModelError, ModelNotFoundError
from glimpse.families import OPENAI_MEAN, OPENAI_STD
from glimpse.spec import Preprocess

CONFIG_FILE = "open_clip_config.json"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # preferred first
TOKENIZER_FILE = "tokenizer.json"
_INTERPOLATIONS = {"bicubic", "bilinear", "nearest", "lanczos", "box", "hamming"}

# Options that change the architecture, with the only value CLIPModel can express (open_clip's defaults).
_VISION_FIXED: dict[str, Any] = {
    "ls_init_value": None, "attentional_pool": False, "no_ln_pre": False, "pos_embed_type": "learnable",
    "final_ln_after_pool": False, "pool_type": "tok", "act_kwargs": None, "norm_kwargs": None,
    "block_type": None, "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False,
    "scale_attn_inner": False, "scale_attn": False, "scale_fc": False, "timm_model_name": None,
}
_TEXT_FIXED: dict[str, Any] = {
    "text_arch": "clip", "variable_text": False, "ls_init_value": None, "embed_cls": False,
    "no_causal_mask": False, "final_ln_after_pool": False, "pool_type": "argmax", "proj_bias": False,
    "proj_type": "linear", "act_kwargs": None, "norm_kwargs": None, "block_type": None, "qk_norm": False,
    "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False, "scale_attn": False,
    "scale_fc": False, "hf_model_name": None,
}
_VISION_SIZES = {"layers", "width", "head_width", "mlp_ratio", "patch_size", "image_size"}
_TEXT_SIZES = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"}
# Settings that do not change what a ViT CLIP computes at inference (training, tokenizer, unused heads).
_VISION_HARMLESS = {"patch_dropout", "output_tokens", "image_seq_len", "attn_pooler_queries", "attn_pooler_heads",
                    "timm_model_pretrained", "timm_pool", "timm_proj", "timm_proj_bias", "timm_drop",
                    "timm_drop_path", "timm_model_kwargs"}
_TEXT_HARMLESS = {"hf_tokenizer_name", "tokenizer_mode", "tokenizer_kwargs", "pad_id", "bos_id", "eos_id",
                  "tokenizer_type", "tiktoken_name", "output_tokens", "hf_model_pretrained", "hf_proj_type",
                  "hf_pooler_type", "hf_model_config"}
_TOP_KNOWN = {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "custom_text", "init_logit_scale",
              "cast_dtype", "nonscalar_logit_scale"}


def weights_file(directory: str | Path) -> Path | None:
    """The open_clip weights of ``directory`` (safetensors preferred), or ``None``."""
    for name in WEIGHT_FILES:
        path = Path(directory) / name
        if path.is_file():
            return path
    return None


def is_open_clip_dir(directory: str | Path) -> bool:
    """True when ``directory`` has ``open_clip_config.json`` and open_clip weights."""
    return (Path(directory) / CONFIG_FILE).is_file() and weights_file(directory) is not None


def read_config(directory: str | Path) -> dict[str, Any]:
    """``open_clip_config.json`` as a dict with ``model_cfg`` and ``preprocess_cfg`` (``{}`` when absent)."""
    path = Path(directory) / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelNotFoundError(f"{directory} is not an open_clip checkpoint: it has no {CONFIG_FILE}") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path} ({exc}); re-download the model") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model_cfg"), dict):
        raise ModelError(f"{path} must hold a JSON object with a \"model_cfg\" object")
    if not isinstance(data.get("preprocess_cfg", {}), dict):
        raise ModelError(f"{path}: \"preprocess_cfg\" must be an object")
    return data


def _shown(value: Any) -> str:
    """``repr(value)`` cut to one short line (an ``audio_cfg`` is a whole dict)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _section(model_cfg: dict[str, Any], key: str) -> dict[str, Any]:
    section = model_cfg.get(key, {})
    if not isinstance(section, dict):
        raise ModelError(f"{CONFIG_FILE}: model_cfg.{key} must be an object")
    return section


def check_supported(model_cfg: dict[str, Any]) -> None:
    """Raise one ``ModelError`` naming the first part of ``model_cfg`` that ``CLIPModel`` cannot express."""
    vision, text = _section(model_cfg, "vision_cfg"), _section(model_cfg, "text_cfg")
    refuse = "glimpse maps only open_clip ViT CLIP models (ViT image tower + default text transformer) to transformers"
    if "multimodal_cfg" in model_cfg:
        raise ModelError(f"unsupported open_clip model: CoCa (model_cfg.multimodal_cfg); {refuse}")
    if model_cfg.get("init_logit_bias") is not None:
        raise ModelError("unsupported open_clip model: SigLIP (model_cfg.init_logit_bias, sigmoid loss); "
                         f"{refuse}")
    if vision.get("timm_model_name"):
        raise ModelError(f"unsupported open_clip image tower: timm model {vision['timm_model_name']!r} "
                         f"(vision_cfg.timm_model_name: ConvNeXt, MobileCLIP, EVA, ...); {refuse}")
    if isinstance(vision.get("layers"), list | tuple):
        raise ModelError(f"unsupported open_clip image tower: ModifiedResNet (vision_cfg.layers is a list); {refuse}")
    if text.get("hf_model_name"):
        raise ModelError(f"unsupported open_clip text tower: Hugging Face model {text['hf_model_name']!r} "
                         f"(text_cfg.hf_model_name); {refuse}")
    for section, name, fixed, known in (
        (vision, "vision_cfg", _VISION_FIXED, _VISION_SIZES | _VISION_HARMLESS),
        (text, "text_cfg", _TEXT_FIXED, _TEXT_SIZES | _TEXT_HARMLESS),
    ):
        for key, value in section.items():
            if key == "block_type" and value in (None, "default"):
                continue
            if key in fixed:
                default = fixed[key]
                if value != default:
                    raise ModelError(f"unsupported open_clip option {name}.{key}={_shown(value)} "
                                     f"(transformers' CLIPModel has only {default!r}); {refuse}")
            elif key not in known and value not in (None, False, 0, "", {}, []):
                raise ModelError(f"unsupported open_clip option {name}.{key}={_shown(value)}; {refuse}")
    for key, value in model_cfg.items():
        if key not in _TOP_KNOWN and value not in (None, False, 0, "", {}, []):
            raise ModelError(f"unsupported open_clip option model_cfg.{key}={_shown(value)}; {refuse}")
    for key in ("image_size", "patch_size"):
        value = vision.get(key)
        if isinstance(value, list | tuple) and len(set(value)) != 1:
            raise ModelError(f"unsupported open_clip option vision_cfg.{key}={value!r} (not square); {refuse}")


def _square(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, list | tuple):
        return int(value[0])
    return int(value)


def clip_config_kwargs(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of transformers' ``CLIPConfig`` for a supported open_clip ``model_cfg``.

    Sizes default to open_clip's ``CLIPVisionCfg`` / ``CLIPTextCfg`` defaults; heads of the image tower are
    ``width // head_width``; the MLP is ``width * mlp_ratio`` wide; LayerNorm eps is nn.LayerNorm's 1e-5.
    """
    check_supported(model_cfg)
    vision, text = _section(model_cfg, "vision_cfg"), _section(model_cfg, "text_cfg")
    # open_clip: QuickGELU only when the config says so (CLIP's default quick_gelu=False is exact GELU).
    act = "quick_gelu" if model_cfg.get("quick_gelu", False) is True else "gelu"
    v_width, t_width = int(vision.get("width", 768)), int(text.get("width", 512))
    v_ratio, t_ratio = float(vision.get("mlp_ratio", 4.0)), float(text.get("mlp_ratio", 4.0))
    head_width = int(vision.get("head_width", 64))
    if v_width % head_width:
        raise ModelError(f"{CONFIG_FILE}: vision_cfg.width {v_width} is not a multiple of head_width {head_width}")
    return {
        "projection_dim": int(model_cfg.get("embed_dim", 512)),
        "vision_config": {
            "hidden_size": v_width, "intermediate_size": int(v_width * v_ratio),
            "num_hidden_layers": int(vision.get("layers", 12)), "num_attention_heads": v_width // head_width,
            "image_size": _square(vision.get("image_size"), 224), "patch_size": _square(vision.get("patch_size"), 16),
            "hidden_act": act, "layer_norm_eps": 1e-5,
        },
        "text_config": {
            "hidden_size": t_width, "intermediate_size": int(t_width * t_ratio),
            "num_hidden_layers": int(text.get("layers", 12)), "num_attention_heads": int(text.get("heads", 8)),
            "vocab_size": int(text.get("vocab_size", 49408)),
            "max_position_embeddings": int(text.get("context_length", 77)),
            "hidden_act": act, "layer_norm_eps": 1e-5,
            # eos_token_id 2 is transformers' "pool at argmax(input_ids)" rule: open_clip's argmax pool exactly.
            # bos/pad are not used by the model; open_clip's pad id is 0, its bos is the tokenizer's business.
            "eos_token_id": 2, "bos_token_id": None, "pad_token_id": 0,
        },
    }


def context_length(model_cfg: dict[str, Any]) -> int:
    """The text tower's context length (open_clip's default 77)."""
    return int(_section(model_cfg, "text_cfg").get("context_length", 77))


def image_size(model_cfg: dict[str, Any]) -> int:
    """The image tower's (square) input size (open_clip's default 224)."""
    return _square(_section(model_cfg, "vision_cfg").get("image_size"), 224)


def preprocess_of(config: dict[str, Any]) -> Preprocess:
    """glimpse's ``Preprocess`` for an open_clip config's ``preprocess_cfg`` (open_clip's eval transform).

    open_clip's defaults: the model's image size, OpenAI mean/std, bicubic, ``resize_mode`` "shortest"
    (shortest side to the size, then center crop). "squash" resizes straight to the size; "longest"
    (resize the long side and pad) is refused.
    """
    cfg = config.get("preprocess_cfg") or {}
    size = image_size(config["model_cfg"])
    mean = tuple(float(x) for x in cfg.get("mean", OPENAI_MEAN))
    std = tuple(float(x) for x in cfg.get("std", OPENAI_STD))
    if len(mean) != 3 or len(std) != 3:
        raise ModelError(f"{CONFIG_FILE}: preprocess_cfg mean/std need 3 values, found {mean} / {std}")
    interpolation = str(cfg.get("interpolation", "bicubic")).lower()
    if interpolation not in _INTERPOLATIONS:
        raise ModelError(f"{CONFIG_FILE}: unsupported preprocess_cfg.interpolation {interpolation!r}; "
                         f"expected one of {sorted(_INTERPOLATIONS)}")
    mode = cfg.get("resize_mode", "shortest")
    common: dict[str, Any] = {"height": size, "width": size, "interpolation": interpolation, "mean": mean, "std": std}
    if mode == "shortest":
        # open_clip's eval transform crops with torchvision's CenterCrop, which rounds the offset.
        return Preprocess(resize="shortest", shortest_edge=size, crop=True, crop_rounding="round", **common)
    if mode == "squash":
        return Preprocess(resize="squash", crop=False, **common)
    raise ModelError(f"{CONFIG_FILE}: unsupported preprocess_cfg.resize_mode {mode!r} "
                     "(glimpse supports 'shortest' and 'squash')")


def _layer_map(prefix: str, out: str, count: int) -> dict[str, str]:
    """open_clip resblock names -> transformers encoder layer names (q/k/v split done by the caller)."""
    names: dict[str, str] = {}
    for n in range(count):
        src, dst = f"{prefix}transformer.resblocks.{n}.", f"{out}encoder.layers.{n}."
        names.update({
            f"{src}attn.out_proj.weight": f"{dst}self_attn.out_proj.weight",
            f"{src}attn.out_proj.bias": f"{dst}self_attn.out_proj.bias",
            f"{src}ln_1.weight": f"{dst}layer_norm1.weight", f"{src}ln_1.bias": f"{dst}layer_norm1.bias",
            f"{src}ln_2.weight": f"{dst}layer_norm2.weight", f"{src}ln_2.bias": f"{dst}layer_norm2.bias",
            f"{src}mlp.c_fc.weight": f"{dst}mlp.fc1.weight", f"{src}mlp.c_fc.bias": f"{dst}mlp.fc1.bias",
            f"{src}mlp.c_proj.weight": f"{dst}mlp.fc2.weight", f"{src}mlp.c_proj.bias": f"{dst}mlp.fc2.bias",
        })
    return names


def map_state_dict(state: dict[str, Any], model_cfg: dict[str, Any]) -> dict[str, Any]:
    """open_clip ``CLIP`` state dict (torch tensors) -> transformers ``CLIPModel`` state dict.

    ``in_proj_weight [3w, w]`` / ``in_proj_bias [3w]`` split into q/k/v; ``visual.proj [w, d]`` and
    ``text_projection [w, d]`` transposed into ``Linear`` weights ``[d, w]``; ``logit_scale`` kept as a
    scalar. A ``custom_text`` checkpoint's ``text.`` prefix is dropped. Raises ``ModelError`` naming
    keys that are missing or that no ``CLIPModel`` weight takes.
    """
    vision, text = _section(model_cfg, "vision_cfg"), _section(model_cfg, "text_cfg")
    if isinstance(state.get("state_dict"), dict):  # a training checkpoint rather than bare weights
        state = state["state_dict"]
    state = {key.removeprefix("module."): value for key, value in state.items()}
    # A custom_text model keeps its text tower under "text."; the names below are plain CLIP's.
    state = {(key.removeprefix("text.") if key.startswith("text.") else key): value for key, value in state.items()}
    state.pop("attn_mask", None)  # a causal-mask buffer old checkpoints saved; CLIPModel builds its own

    names = {
        "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
        "visual.class_embedding": "vision_model.embeddings.class_embedding",
        "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
        "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
        "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
        "visual.ln_post.weight": "vision_model.post_layernorm.weight",
        "visual.ln_post.bias": "vision_model.post_layernorm.bias",
        "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
        "positional_embedding": "text_model.embeddings.position_embedding.weight",
        "ln_final.weight": "text_model.final_layer_norm.weight",
        "ln_final.bias": "text_model.final_layer_norm.bias",
    }
    names |= _layer_map("visual.", "vision_model.", int(vision.get("layers", 12)))
    names |= _layer_map("", "text_model.", int(text.get("layers", 12)))
    transposed = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}
    split = {}
    for prefix, out, count in (("visual.", "vision_model.", int(vision.get("layers", 12))),
                               ("", "text_model.", int(text.get("layers", 12)))):
        for n in range(count):
            for kind in ("weight", "bias"):
                split[f"{prefix}transformer.resblocks.{n}.attn.in_proj_{kind}"] = (
                    f"{out}encoder.layers.{n}.self_attn.", kind)

    wanted = set(names) | set(transposed) | set(split) | {"logit_scale"}
    missing = sorted(wanted - set(state))
    unexpected = sorted(set(state) - wanted)
    if missing or unexpected:
        def some(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")

        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) ({some(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} key(s) no CLIPModel weight takes ({some(unexpected)})")
        raise ModelError(f"the open_clip weights do not match {CONFIG_FILE}: {'; '.join(parts)}; "
                         "re-download the model or check the config belongs to these weights")

    mapped: dict[str, Any] = {names[key]: state[key] for key in names}
    for key, out in transposed.items():
        mapped[out] = state[key].t().contiguous()
    for key, (out, kind) in split.items():
        q, k, v = state[key].chunk(3, dim=0)
        mapped |= {f"{out}q_proj.{kind}": q, f"{out}k_proj.{kind}": k, f"{out}v_proj.{kind}": v}
    mapped["logit_scale"] = state["logit_scale"].reshape(())  # nonscalar_logit_scale stores shape [1]
    return mapped


def _load_weights(path: Path) -> dict[str, Any]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated download raises anything from OSError to pickle errors
        raise ModelError(f"cannot read open_clip weights {path} ({type(exc).__name__}: {exc}); "
                         "re-download the model") from exc
    if not isinstance(state, dict):
        raise ModelError(f"{path} holds a {type(state).__name__}, not an open_clip state dict")
    return state


def load_clip_model(directory: str | Path) -> Any:
    """transformers' ``CLIPModel`` (float32, eval) with the open_clip weights of ``directory`` mapped in."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    directory = Path(directory)
    config = read_config(directory)
    model_cfg = config["model_cfg"]
    kwargs = clip_config_kwargs(model_cfg)
    path = weights_file(directory)
    if path is None:
        raise ModelNotFoundError(f"{directory} has {CONFIG_FILE} but no weights (expected one of "
                                 f"{', '.join(WEIGHT_FILES)}); download the complete model directory")
    mapped = map_state_dict(_load_weights(path), model_cfg)
    model = CLIPModel(CLIPConfig(**kwargs))
    try:
        result = model.load_state_dict({k: v.to(torch.float32) for k, v in mapped.items()}, strict=False)
    except RuntimeError as exc:  # shapes that disagree with the config
        raise ModelError(f"the open_clip weights in {path} do not fit {CONFIG_FILE} "
                         f"({str(exc).splitlines()[-1].strip()}); check the config belongs to these weights") from exc
    missing = [key for key in result.missing_keys if not key.endswith("position_ids")]
    if missing or result.unexpected_keys:  # pragma: no cover - map_state_dict already names every key
        raise ModelError(f"open_clip mapping left {missing or result.unexpected_keys} unfilled")
    return model.float().eval()


def load_tokenizer(directory: str | Path, context: int) -> Any:
    """The CLIP BPE tokenizer of an open_clip checkpoint (``tokenizer.json``, or ``vocab.json`` + ``merges.txt``),
    truncating at ``context``.

    transformers' CLIP tokenizer normalises with NFC, whitespace folding and lower-casing; open_clip's
    SimpleTokenizer also runs ftfy and HTML-unescapes, which the encoders do first for these checkpoints
    (their spec's ``extra["clean"]`` is ``"open_clip"``: ``tokenizer.clean_text``).
    """
    from transformers import CLIPTokenizerFast

    directory = Path(directory)
    slow = all((directory / name).is_file() for name in ("vocab.json", "merges.txt"))  # converted on load
    if not (directory / TOKENIZER_FILE).is_file() and not slow:
        raise ModelNotFoundError(
            f"{directory} has no {TOKENIZER_FILE}: open_clip's default tokenizer is CLIP's BPE, so put the "
            f"tokenizer.json of openai/clip-vit-base-patch32 (or of the model's hub repo) beside {CONFIG_FILE}"
        )
    try:
        tokenizer = CLIPTokenizerFast.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the tokenizer in {directory} ({exc}); re-download {TOKENIZER_FILE}") from exc
    tokenizer.model_max_length = context
    return tokenizer
