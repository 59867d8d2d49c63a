"""Tiny random checkpoints in the real Hugging Face on-disk format, for tests and benchmarks.

Every factory writes ``config.json`` + ``model.safetensors`` (``save_pretrained``), the tokenizer files and
``preprocessor_config.json`` into a directory, exactly as a hub snapshot looks, so that tests go through
the real loading code. Weights are seeded with ``torch.manual_seed`` so a given ``seed`` always gives the
same checkpoint (and two seeds give different ones).

Import this module only in tests that need torch + transformers; it imports them at the top.
"""

from __future__ import annotations

import io
import itertools
import json
import os
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest
import torch

# The real CLIP BPE tokenizer (tokenizer.json of openai/clip-vit-base-patch32), shipped with the test data
# in ../shared/data next to the checkout; GLIMPSE_TEST_CLIP_TOKENIZER points elsewhere. Only what needs CLIP's
# own token ids (the B/32-shaped benchmark models, the check that the trained tokenizer has CLIP's format) uses
# it; tiny models use the small tokenizer trained below, so the suite runs on a fresh clone.
CLIP_TOKENIZER_DIR = Path(
    os.environ.get("GLIMPSE_TEST_CLIP_TOKENIZER")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "clip-tokenizer"
)

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
BICUBIC = 3  # PIL.Image.Resampling.BICUBIC, as stored in preprocessor_config.json

# "a photo of a dog" with the real CLIP tokenizer (bos, tokens, eos): used to check the tokenizer file.
CLIP_DOG_IDS = [49406, 320, 1125, 539, 320, 1929, 49407]
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# CLIP's pre-tokenizer split (transformers' CLIPTokenizer and the real tokenizer.json use this exact pattern).
CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def require_clip_tokenizer() -> Path:
    """Return the real CLIP tokenizer directory, or skip the calling test when the test data is absent."""
    if not (CLIP_TOKENIZER_DIR / "tokenizer.json").is_file():
        pytest.skip(f"the real CLIP tokenizer (test data) is not at {CLIP_TOKENIZER_DIR}")
    return CLIP_TOKENIZER_DIR


def real_clip_tokenizer(context_length: int = 77):
    """The real CLIP tokenizer (checked against CLIP_DOG_IDS); skips the calling test without the test data."""
    from transformers import CLIPTokenizerFast

    tok_dir = require_clip_tokenizer()
    tokenizer = CLIPTokenizerFast(
        tokenizer_file=str(tok_dir / "tokenizer.json"),
        bos_token=BOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=EOS,
        model_max_length=context_length,
    )
    ids = tokenizer("a photo of a dog")["input_ids"]
    if ids != CLIP_DOG_IDS:
        raise RuntimeError(f"{tok_dir}/tokenizer.json is not CLIP's: got {ids}, want {CLIP_DOG_IDS}")
    return tokenizer


def _byte_symbols() -> list[str]:
    """CLIP's ``bytes_to_unicode``: one printable character per byte, in CLIP's order (its first 256 ids)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]


def _tokenizer_corpus() -> list[str]:
    """The small fixed English corpus the test tokenizer's merges are learnt from."""
    return [*_siglip_corpus(), " ".join(_EN_WORDS)]


def _clip_words(texts: list[str]) -> Counter[tuple[str, ...]]:
    """Word counts as CLIP's BPE sees them: normalised, split and byte-mapped by CLIP's own pipeline (run by
    ``tokenizers``), one symbol per byte and ``</w>`` on the last one."""
    from tokenizers import Regex, normalizers, pre_tokenizers

    normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    splitter = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    words: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)):
            words[(*word[:-1], word[-1] + "</w>")] += 1
    return words


@lru_cache(maxsize=1)
def trained_clip_merges(max_merges: int = 400) -> tuple[tuple[str, str], ...]:
    """BPE merges learnt from ``_tokenizer_corpus()``: the most frequent adjacent pair first, ties broken by
    the pair itself, so the result is the same on every machine (``tokenizers``' trainer breaks ties by hash
    order, which differs between runs)."""
    return tuple(learn_merges(_clip_words(_tokenizer_corpus()), max_merges))


def learn_merges(words: Counter[tuple[str, ...]], max_merges: int) -> list[tuple[str, str]]:
    """BPE merges of ``words`` (symbol tuples with counts), most frequent adjacent pair first, ties broken by
    the pair itself (deterministic on every machine); stops at pairs seen fewer than twice."""
    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        if pairs[best] < 2:
            break
        merges.append(best)
        words = Counter({_merge(word, best): count for word, count in words.items()})
    return merges


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(word):
        if word[i : i + 2] == pair:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def trained_clip_vocab() -> dict[str, int]:
    """CLIP's vocabulary layout: the 256 byte symbols, the same with ``</w>``, one token per merge, bos, eos."""
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += list(dict.fromkeys(a + b for a, b in trained_clip_merges()))
    tokens += [BOS, EOS]
    return {token: i for i, token in enumerate(tokens)}


def small_clip_tokenizer(context_length: int = 77):
    """A small CLIP tokenizer (~620 tokens) in the real format: byte-level BPE with CLIP's normaliser (NFC,
    whitespace, lower-case), pre-tokenizer, ``</w>`` word ends and bos/eos post-processor; bos and eos are the
    last two ids, as in CLIP. Built by transformers' own ``CLIPTokenizer`` from the trained merges."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=trained_clip_vocab(), merges=list(trained_clip_merges()), bos_token=BOS,
                         eos_token=EOS, unk_token=EOS, pad_token=EOS, model_max_length=context_length)


def write_small_clip_tokenizer(directory: Path, context_length: int = 77) -> Path:
    """Save the small CLIP tokenizer (``tokenizer.json`` + ``tokenizer_config.json``) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    small_clip_tokenizer(context_length).save_pretrained(directory)
    return directory


def _write_clip(
    directory: Path,
    *,
    vision: dict,
    text: dict,
    projection_dim: int,
    image_size: int,
    seed: int,
    real_tokenizer: bool = False,
) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    context_length = text.get("max_position_embeddings", 77)
    tokenizer = real_clip_tokenizer(context_length) if real_tokenizer else small_clip_tokenizer(context_length)
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
    """A tiny random ``CLIPModel`` (2 layers, hidden 32) with the small trained CLIP tokenizer; returns ``directory``.

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
    """A random ``CLIPModel`` with the exact shapes of openai/clip-vit-base-patch32 (for benchmarks): the real
    CLIP tokenizer (its 49,408-row embedding table), so it needs the test data."""
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
        real_tokenizer=True,
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


# -- SigLIP2 ---------------------------------------------------------------------------------------------
_GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]  # Gemma's first ids, as in google/siglip2-*


@lru_cache(maxsize=1)
def gemma_like_vocab_and_merges() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """A tiny Gemma-style BPE (what SigLIP2 uses): specials, the 256 ``<0xNN>`` byte-fallback tokens, the
    corpus' characters (spaces as ``▁``), then merges learnt from the lower-cased corpus by the same
    deterministic most-frequent-pair rule as ``trained_clip_merges`` (no hash-order ties)."""
    words: Counter[tuple[str, ...]] = Counter()
    for line in _tokenizer_corpus():
        for i, word in enumerate(line.lower().split(" ")):
            words[tuple(("▁" if i else "") + word)] += 1
    chars = sorted({c for word in words for c in word} | {"▁"})
    merges = learn_merges(words, 300)
    tokens = [*_GEMMA_SPECIALS, *(f"<0x{b:02X}>" for b in range(256)), *chars]
    tokens += [a + b for a, b in merges]
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}, tuple(merges)


def small_siglip2_tokenizer(context_length: int = 64):
    """transformers' ``Siglip2Tokenizer`` (Gemma's BPE + SigLIP2's lower-casing) over the tiny Gemma-like vocab."""
    from transformers import Siglip2Tokenizer

    vocab, merges = gemma_like_vocab_and_merges()
    return Siglip2Tokenizer(vocab=vocab, merges=list(merges), model_max_length=context_length)


def _siglip2_text_config(tokenizer) -> dict:
    return {"vocab_size": len(tokenizer), **TINY_TOWER, "max_position_embeddings": 64,
            "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "projection_size": 32}


def make_tiny_siglip2(directory: Path, *, image_size: int = 32, seed: int = 0) -> Path:
    """A tiny fixed-resolution SigLIP2 as google/siglip2-base-patch16-224 ships it: a ``SiglipModel`` config
    (model_type ``siglip``) with a Gemma-like tokenizer and a bilinear 224² squash (here ``image_size``²)."""
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = small_siglip2_tokenizer()
    tokenizer.save_pretrained(directory)
    config = SiglipConfig(text_config=_siglip2_text_config(tokenizer),
                          vision_config={**TINY_TOWER, "image_size": image_size, "patch_size": 8})
    torch.manual_seed(seed)
    SiglipModel(config).eval().save_pretrained(directory)
    SiglipImageProcessorPil(size={"height": image_size, "width": image_size}, resample=2,
                            image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]).save_pretrained(directory)
    return directory


def make_tiny_siglip2_naflex(directory: Path, *, patch_size: int = 4, max_num_patches: int = 24,
                             seed: int = 0) -> Path:
    """A tiny ``Siglip2Model`` (NaFlex) with its ``Siglip2ImageProcessorPil`` (``patch_size``,
    ``max_num_patches``) and the tiny Gemma-like ``Siglip2Tokenizer``, as google/siglip2-*-naflex ship them."""
    from transformers import Siglip2Config, Siglip2ImageProcessorPil, Siglip2Model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = small_siglip2_tokenizer()
    tokenizer.save_pretrained(directory)
    config = Siglip2Config(text_config=_siglip2_text_config(tokenizer),
                           vision_config={**TINY_TOWER, "patch_size": patch_size, "num_patches": 16})
    torch.manual_seed(seed)
    Siglip2Model(config).eval().save_pretrained(directory)
    Siglip2ImageProcessorPil(patch_size=patch_size, max_num_patches=max_num_patches).save_pretrained(directory)
    return directory


# -- AltCLIP ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def xlmr_pieces() -> tuple[tuple[str, float], ...]:
    """A tiny SentencePiece unigram (English + CJK corpus) as ``(piece, score)`` in XLM-R's id layout."""
    try:
        import sentencepiece as spm
    except ImportError:  # pragma: no cover - depends on the environment
        pytest.skip("sentencepiece is not installed (needed for the AltCLIP tokenizer)")
    model = io.BytesIO()
    corpus = [*_siglip_corpus(), " ".join(_EN_WORDS), *(" ".join(_CJK[i : i + 6]) for i in range(0, len(_CJK), 6))]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, model_type="unigram", vocab_size=200,
        hard_vocab_limit=False, character_coverage=1.0, pad_id=-1, bos_id=-1, eos_id=-1, unk_id=0,
        num_threads=1, minloglevel=2,
    )
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    pieces = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(1, processor.get_piece_size())]
    # XLM-R's layout: <s>=0, <pad>=1, </s>=2, <unk>=3, the pieces, <mask> last.
    return (("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *pieces, ("<mask>", 0.0))


def small_xlmr_tokenizer(context_length: int = 512):
    """transformers' ``XLMRobertaTokenizer`` over the tiny unigram vocabulary (AltCLIP's text tokenizer)."""
    from transformers import XLMRobertaTokenizer

    return XLMRobertaTokenizer(vocab=list(xlmr_pieces()), model_max_length=context_length)


def make_tiny_altclip(directory: Path, *, image_size: int = 32, projection_dim: int = 16, seed: int = 0) -> Path:
    """A tiny random ``AltCLIPModel`` as BAAI/AltCLIP ships it: CLIP vision tower + image processor (shortest
    edge + center crop, bicubic, OpenAI mean/std), XLM-R text tower (positions from 2) + tokenizer."""
    from transformers import AltCLIPConfig, AltCLIPModel, AltCLIPProcessor, CLIPImageProcessorPil

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = small_xlmr_tokenizer(context_length=64)
    config = AltCLIPConfig(
        text_config={**TINY_TOWER, "vocab_size": len(tokenizer), "max_position_embeddings": 66,
                     "project_dim": projection_dim, "pad_token_id": tokenizer.pad_token_id,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id},
        vision_config={**TINY_TOWER, "image_size": image_size, "patch_size": 8, "projection_dim": projection_dim},
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    AltCLIPModel(config).eval().save_pretrained(directory)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        resample=BICUBIC, image_mean=OPENAI_MEAN, image_std=OPENAI_STD,
    )
    AltCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def describe(directory: Path) -> dict:
    """The saved ``config.json`` of a checkpoint, as a dict (handy in assertions)."""
    return json.loads((Path(directory) / "config.json").read_text(encoding="utf-8"))
