"""The test fixtures themselves: the small trained CLIP tokenizer is CLIP's tokenizer in all but its merges."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

import tiny_models
from tiny_models import BOS, EOS, require_clip_tokenizer, small_clip_tokenizer

TEXTS = ["a photo of a dog", "A RED car on the beach!", "一只猫的照片", "it's 5 o'clock", "tab\tand  spaces", ""]


def test_small_tokenizer_is_deterministic_and_behaves_like_clip():
    merges = tiny_models.trained_clip_merges()
    tiny_models.trained_clip_merges.cache_clear()
    assert tiny_models.trained_clip_merges() == merges  # trained again: the same merges, so the same models
    tokenizer = small_clip_tokenizer()
    vocab = tokenizer.get_vocab()
    assert len(vocab) < 1000 and (vocab[BOS], vocab[EOS]) == (len(vocab) - 2, len(vocab) - 1)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == vocab[EOS]  # CLIP pads with eos
    for text in TEXTS:
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == vocab[BOS] and ids[-1] == vocab[EOS] and EOS not in tokenizer.convert_ids_to_tokens(ids[1:-1])
        assert tokenizer(text.upper())["input_ids"] == ids  # lower-cased
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("the red car")["input_ids"])
    assert tokens == [BOS, "the</w>", "red</w>", "car</w>", EOS]  # learnt merges, CLIP's word-end marker
    long = tokenizer(" ".join(["a photo of a green tree"] * 40), truncation=True)["input_ids"]
    assert len(long) == 77 and long[-1] == vocab[EOS]


def test_tiny_clip_checkpoint_carries_the_small_tokenizer(tiny_clip):
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(str(tiny_clip), local_files_only=True)
    assert [loaded(t)["input_ids"] for t in TEXTS] == [small_clip_tokenizer()(t)["input_ids"] for t in TEXTS]
    config = json.loads((tiny_clip / "config.json").read_text())["text_config"]
    assert config["vocab_size"] == len(loaded) and config["eos_token_id"] == loaded.eos_token_id


def test_small_tokenizer_has_the_real_clip_format(tmp_path):
    """Same normaliser, pre-tokenizer, decoder, BPE settings and byte ids as the real CLIP tokenizer.json."""
    real_dir = require_clip_tokenizer()
    real = json.loads((real_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tiny_models.write_small_clip_tokenizer(tmp_path)
    small = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))

    def same_keys(ours, theirs):  # a newer tokenizers writes a few more default-valued keys
        if isinstance(theirs, dict):
            return {k: same_keys(ours[k], v) for k, v in theirs.items()}
        if isinstance(theirs, list):
            return [same_keys(a, b) for a, b in zip(ours, theirs, strict=True)]
        return ours

    for section in ("normalizer", "pre_tokenizer", "decoder"):
        assert same_keys(small[section], real[section]) == real[section], section
    settings = {k: v for k, v in real["model"].items() if k not in ("vocab", "merges")}
    assert same_keys(small["model"], settings) == settings
    real_vocab, small_vocab = real["model"]["vocab"], small["model"]["vocab"]
    assert [t for t, i in sorted(small_vocab.items(), key=lambda kv: kv[1])][:512] == \
        [t for t, i in sorted(real_vocab.items(), key=lambda kv: kv[1])][:512]  # the byte symbols, CLIP's ids
    processor = small["post_processor"]
    assert processor["type"] == real["post_processor"]["type"]
    assert (processor["cls"][0], processor["sep"][0]) == (BOS, EOS)
    real_tokenizer = tiny_models.real_clip_tokenizer()
    for text in TEXTS:  # the same text comes back out (normalised alike)
        assert small_clip_tokenizer().decode(small_clip_tokenizer()(text)["input_ids"]) == \
            real_tokenizer.decode(real_tokenizer(text)["input_ids"])
