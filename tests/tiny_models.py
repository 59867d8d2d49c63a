"""Tiny random checkpoints in the real Hugging Face on-disk format, for tests and benchmarks.

Every factory writes ``config.json`` + ``model.safetensors`` (``save_pretrained``), the tokenizer files and
``preprocessor_config.json`` into a directory, exactly as a hub snapshot looks, so that tests go through
the real loading code. Weights are seeded with ``torch.manual_seed`` so a given ``seed`` always gives the
same checkpoint (and two seeds give different ones).

Import this module only in tests that need torch + transformers; it imports them at the top.
"""

from __future__ import annotations

import io
import json
import os
from functools import lru_cache
from pathlib import Path

import pytest
import torch

# The real CLIP BPE tokenizer (tokenizer.json of openai/clip-vit-base-patch32), shipped with the test data
# in ../shared/data next to the checkout; GLIMPSE_TEST_CLIP_TOKENIZER points elsewhere.
CLIP_TOKENIZER_DIR = Path(
    os.environ.get("GLIMPSE_TEST_CLIP_TOKENIZER")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "clip-tokenizer"
)

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
BICUBIC = 3  # PIL.Image.Resampling.BICUBIC, as stored in preprocessor_config.json

# "a photo of a dog" with the real CLIP tokenizer (bos, tokens, eos): used to check the tokenizer file.
CLIP_DOG_IDS = [49406, 320, 1125, 539, 320, 1929, 49407]


def require_clip_tokenizer() -> Path:
    """Return the CLIP tokenizer directory, or skip the calling test when the test data is absent."""
    if not (CLIP_TOKENIZER_DIR / "tokenizer.json").is_file():
        pytest.skip(f"CLIP tokenizer test data not found at {CLIP_TOKENIZER_DIR}")
    return CLIP_TOKENIZER_DIR


def _clip_tokenizer(context_length: int = 77):
    from transformers import CLIPTokenizerFast

    tok_dir = require_clip_tokenizer()
    tokenizer = CLIPTokenizerFast(
        tokenizer_file=str(tok_dir / "tokenizer.json"),
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=context_length,
    )
    ids = tokenizer("a photo of a dog")["input_ids"]
    if ids != CLIP_DOG_IDS:
        raise RuntimeError(f"{tok_dir}/tokenizer.json is not CLIP's: got {ids}, want {CLIP_DOG_IDS}")
    return tokenizer


def _write_clip(
    directory: Path,
    *,
    vision: dict,
    text: dict,
    projection_dim: int,
    image_size: int,
    seed: int,
) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _clip_tokenizer(text.get("max_position_embeddings", 77))
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": 1,
            **text,
        },
        vision_config={"image_size": image_size, **vision},
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        resample=BICUBIC,
        image_mean=OPENAI_MEAN,
        image_std=OPENAI_STD,
    ).save_pretrained(directory)
    return directory


#: the shape of every tiny tower (vision and text, all three model families)
TINY_TOWER = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4}


def make_tiny_clip(directory: Path, *, image_size: int = 32, projection_dim: int = 16, seed: int = 0) -> Path:
    """A tiny random ``CLIPModel`` (2 layers, hidden 32) with the real CLIP tokenizer; returns ``directory``.

    Preprocessing: shortest edge -> ``image_size``, center crop ``image_size``², bicubic, OpenAI mean/std.
    """
    return _write_clip(
        directory,
        vision={**TINY_TOWER, "patch_size": 8},
        text={**TINY_TOWER, "max_position_embeddings": 77},
        projection_dim=projection_dim,
        image_size=image_size,
        seed=seed,
    )


def make_clip_b32_shaped(directory: Path, seed: int = 0) -> Path:
    """A random ``CLIPModel`` with the exact shapes of openai/clip-vit-base-patch32 (for benchmarks)."""
    return _write_clip(
        directory,
        vision={
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "patch_size": 32,
            "hidden_act": "quick_gelu",
        },
        text={
            "hidden_size": 512,
            "intermediate_size": 2048,
            "num_hidden_layers": 12,
            "num_attention_heads": 8,
            "max_position_embeddings": 77,
            "hidden_act": "quick_gelu",
        },
        projection_dim=512,
        image_size=224,
        seed=seed,
    )


# -- Chinese CLIP -----------------------------------------------------------------------------------
_CJK = "一只猫狗的照片红色汽车海滩蓝天白云绿树花人男女孩子在上下大小山水城市夜晚早上张图和是有中国鸟鱼马"
_EN_WORDS = [
    "a", "photo", "of", "the", "dog", "cat", "red", "car", "beach", "sky", "blue", "green", "tree",
    "man", "woman", "on", "in", "and", "with", "picture",
]  # fmt: skip


def chinese_clip_vocab() -> list[str]:
    """The WordPiece vocabulary of the tiny Chinese CLIP: specials, CJK characters, English words/letters."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list(dict.fromkeys(_CJK))
    vocab += _EN_WORDS
    vocab += [c for c in letters if c not in _EN_WORDS] + [f"##{c}" for c in letters]
    vocab += list("0123456789.,!?")
    return vocab


def make_tiny_chinese_clip(directory: Path, *, image_size: int = 32, projection_dim: int = 16, seed: int = 0) -> Path:
    """A tiny random ``ChineseCLIPModel`` with a generated BERT WordPiece vocab; returns ``directory``.

    Preprocessing like OFA-Sys/chinese-clip-*: squash resize to ``image_size``² (no crop), bicubic,
    OpenAI mean/std.
    """
    from transformers import (
        BertTokenizerFast,
        ChineseCLIPConfig,
        ChineseCLIPImageProcessorPil,
        ChineseCLIPModel,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = chinese_clip_vocab()
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True, model_max_length=64)
    tokenizer.save_pretrained(directory)

    config = ChineseCLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            **TINY_TOWER,
            "max_position_embeddings": 64,
            "type_vocab_size": 2,
            "pad_token_id": 0,
        },
        vision_config={
            **TINY_TOWER,
            "image_size": image_size,
            "patch_size": 8,
        },
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    ChineseCLIPModel(config).eval().save_pretrained(directory)
    ChineseCLIPImageProcessorPil(
        size={"height": image_size, "width": image_size},
        do_center_crop=False,
        crop_size={"height": image_size, "width": image_size},
        resample=BICUBIC,
        image_mean=OPENAI_MEAN,
        image_std=OPENAI_STD,
    ).save_pretrained(directory)
    return directory


# -- SigLIP ----------------------------------------------------------------------------------------------
def _siglip_corpus() -> list[str]:
    subjects = ["a dog", "a cat", "two birds", "the red car", "a man", "a woman", "children", "a horse"]
    places = ["on the beach", "in the city", "under a blue sky", "near green trees", "at night", "in snow"]
    extras = ["photo", "picture", "painting", "close up", "blurry", "bright", "dark", "sunset", "mountain"]
    lines = [f"{s} {p}" for s in subjects for p in places]
    lines += [f"a {e} of {s} {p}" for e in extras for s in subjects for p in places[:2]]
    lines += ["abcdefghijklmnopqrstuvwxyz 0123456789"]
    return lines


@lru_cache(maxsize=1)
def _siglip_spm_bytes() -> bytes:
    """Train (once per process) a tiny deterministic SentencePiece unigram model like SigLIP's."""
    try:
        import sentencepiece as spm
    except ImportError:  # pragma: no cover - depends on the environment
        pytest.skip("sentencepiece is not installed (needed for the SigLIP tokenizer)")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_siglip_corpus()),
        model_writer=model,
        model_type="unigram",
        vocab_size=160,
        hard_vocab_limit=False,
        character_coverage=1.0,
        # SigLIP's layout: <pad>=0, </s>=1, <unk>=2, no bos.
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,  # deterministic
        minloglevel=2,
    )
    return model.getvalue()


def make_tiny_siglip(directory: Path, *, image_size: int = 32, seed: int = 0) -> Path:
    """A tiny random ``SiglipModel`` (hidden 32) with a trained tiny SentencePiece tokenizer.

    Preprocessing like google/siglip-*: squash resize to ``image_size``², bicubic, mean/std 0.5.
    Text is padded to ``max_length`` 64 (SigLIP pools the last token).
    """
    from transformers import (
        SiglipConfig,
        SiglipImageProcessorPil,
        SiglipModel,
        SiglipTextConfig,
        SiglipTokenizer,
        SiglipVisionConfig,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spm_file = directory / "spiece.model"
    spm_file.write_bytes(_siglip_spm_bytes())
    tokenizer = SiglipTokenizer(vocab_file=str(spm_file), model_max_length=64)
    tokenizer.save_pretrained(directory)

    # (transformers itself warns about bos/eos 49406/49407 while saving: it validates a default
    # SiglipTextConfig when diffing against it; harmless.)
    config = SiglipConfig(
        text_config=SiglipTextConfig(
            vocab_size=tokenizer.vocab_size,
            **TINY_TOWER,
            max_position_embeddings=64,
            # SigLIP's tokenizer has no bos; </s> (id 1) is both eos and pad, as in google/siglip-*.
            pad_token_id=1,
            bos_token_id=None,
            eos_token_id=1,
            projection_size=32,
        ),
        vision_config=SiglipVisionConfig(
            **TINY_TOWER,
            image_size=image_size,
            patch_size=8,
        ),
    )
    torch.manual_seed(seed)
    SiglipModel(config).eval().save_pretrained(directory)
    SiglipImageProcessorPil(
        size={"height": image_size, "width": image_size},
        resample=BICUBIC,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    ).save_pretrained(directory)
    return directory


def describe(directory: Path) -> dict:
    """The saved ``config.json`` of a checkpoint, as a dict (handy in assertions)."""
    return json.loads((Path(directory) / "config.json").read_text(encoding="utf-8"))
