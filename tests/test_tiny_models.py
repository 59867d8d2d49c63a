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


def test_tiny_siglip2_tokenizer_has_gemma_s_format(tmp_path):
    """Gemma's BPE as SigLIP2 ships it: byte fallback, ``▁`` for spaces, SigLIP2's lower-casing, Gemma's ids."""
    vocab, merges = tiny_models.gemma_like_vocab_and_merges()
    tiny_models.gemma_like_vocab_and_merges.cache_clear()
    assert tiny_models.gemma_like_vocab_and_merges() == (vocab, merges)  # learnt again: the same tokenizer
    directory = tiny_models.make_tiny_siglip2_naflex(tmp_path / "naflex")
    saved = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    assert saved["model"]["type"] == "BPE" and saved["model"]["byte_fallback"] is True
    assert [vocab[t] for t in ("<pad>", "<eos>", "<bos>", "<unk>", "<0x00>")] == [0, 1, 2, 3, 5]
    tokenizer = tiny_models.small_siglip2_tokenizer()
    assert tokenizer("A RED Car")["input_ids"] == tokenizer("a red car")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("the red car")["input_ids"])
    assert tokens == ["the", "▁red", "▁car"]  # learnt merges
    assert "<0xE4>" in tokenizer.convert_ids_to_tokens(tokenizer("一")["input_ids"])  # unseen: byte fallback
    assert json.loads((directory / "config.json").read_text())["model_type"] == "siglip2"
    assert json.loads((directory / "preprocessor_config.json").read_text())["max_num_patches"] == 24


def test_tiny_altclip_tokenizer_has_xlm_r_s_format(tmp_path):
    """XLM-R's unigram layout (<s>=0, <pad>=1, </s>=2, <unk>=3, <mask> last), Metaspace, <s> … </s>."""
    directory = tiny_models.make_tiny_altclip(tmp_path / "altclip")
    saved = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    assert saved["model"]["type"] == "Unigram"
    tokenizer = tiny_models.small_xlmr_tokenizer()
    vocab = tokenizer.get_vocab()
    assert [vocab[t] for t in ("<s>", "<pad>", "</s>", "<unk>")] == [0, 1, 2, 3]
    assert vocab["<mask>"] == len(vocab) - 1
    ids = tokenizer("a photo of a dog")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and 3 not in ids
    pieces = tiny_models.xlmr_pieces()
    tiny_models.xlmr_pieces.cache_clear()
    assert tiny_models.xlmr_pieces() == pieces  # trained again: the same tokenizer
    assert [piece for piece, _ in saved["model"]["vocab"]] == [piece for piece, _ in pieces]
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "altclip" and config["text_config"]["vocab_size"] == len(vocab)
    assert json.loads((directory / "processor_config.json").read_text())["processor_class"] == "AltCLIPProcessor"
