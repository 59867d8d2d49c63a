"""A torch-free text tokenizer: a ``tokenizer.json`` (Hugging Face ``tokenizers``) applied as the model was trained.

The ONNX runtime path must not import transformers, so the checkpoint's fast tokenizer is saved as
``tokenizer.json`` at export time (see ``glimpse.encoders.export``) and applied here with the ``tokenizers``
library alone. Truncation and padding follow the ``ModelSpec``: at most ``context_length`` ids (special
tokens included), padded to the longest text of the batch (CLIP, Chinese CLIP) or always to
``context_length`` (SigLIP, which pools the last position and so was trained on fixed-length text).
"""

from __future__ import annotations

import contextlib
import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from glimpse.errors import ModelError, UserInputError

TOKENIZER_FILENAME = "tokenizer.json"
_PUNCTUATION = str.maketrans("", "", string.punctuation)
# Bump when the compact copy's content rule changes: older copies are then simply not found.
COMPACT_VERSION = 1
# BPE merges written as ["a", "b"] pairs (tokenizers >= 0.20 saves them so), which the compact copy rewrites.
_PAIR_MERGES = re.compile(r'"merges"\s*:\s*\[\s*\[')


def compact_source(path: Path) -> str:
    """The JSON text to build the tokenizer of ``path`` from: the file's own text, or its compact copy.

    ``tokenizers`` builds a BPE whose merges are ``["a", "b"]`` pairs ~2.5x slower than one whose merges
    are ``"a b"`` strings (120 vs 47 ms for CLIP's 48,894 merges here: a fifth of a cold search). Both
    forms mean the same when no merge part holds a space (byte-level BPEs never do), so such a file is
    rewritten once into glimpse's cache (``digests.cache_dir()/tokenizers/<sha256>-v<N>.json``, keyed by
    the file's content) and later loads read the copy. The file itself is never changed; any failure
    (an unwritable cache, a merge with a space) falls back to the file's own text.
    """
    from glimpse.digests import cache_dir, file_sha256, write_text_atomically

    copy: Path | None = None
    with contextlib.suppress(OSError, UnicodeDecodeError):
        copy = cache_dir() / "tokenizers" / f"{file_sha256(path)}-v{COMPACT_VERSION}.json"
        return copy.read_text(encoding="utf-8")  # made from this very content (the name is its digest)
    text = path.read_text(encoding="utf-8")
    if copy is None or not _PAIR_MERGES.search(text):
        return text
    data = json.loads(text)
    merges = data.get("model", {}).get("merges")
    if not isinstance(merges, list) or not all(
            isinstance(m, list) and len(m) == 2 and all(isinstance(p, str) and " " not in p for p in m)
            for m in merges):
        return text
    data["model"]["merges"] = [f"{a} {b}" for a, b in merges]
    compact = json.dumps(data, ensure_ascii=False)
    write_text_atomically(copy, compact)  # a failed write only costs this conversion again next time
    return compact


#: How a model's queries are cleaned before tokenizing (``clean_text``), as its own tokenizer cleaned captions.
CLEAN_RULES = ("whitespace", "canonicalize", "open_clip")


def clean_rule(extra: dict) -> str | None:
    """The cleaning rule a spec's ``extra`` names: its ONNX section's ``clean`` (immich folders, glimpse's
    exports) or its own (open_clip checkpoints, for the torch runtime); None when the tokenizer needs none."""
    onnx = extra.get("onnx")
    rule = onnx.get("clean") if isinstance(onnx, dict) else None
    return rule if rule is not None else extra.get("clean")


def clean_text(text: str, rule: str = "whitespace") -> str:
    """``text`` cleaned by ``rule`` (one of ``CLEAN_RULES``):

    * ``"whitespace"``: whitespace runs collapsed to one space, the ends stripped (immich's reader, for every
      query of an immich model);
    * ``"canonicalize"``: that, then ASCII punctuation dropped and lower-cased (open_clip's
      ``tokenizer_kwargs.clean == "canonicalize"``: SigLIP2, as its training captions were);
    * ``"open_clip"``: open_clip's ``SimpleTokenizer`` (the tokenizer of open_clip checkpoints): mojibake
      repaired by ``ftfy.fix_text`` (which also NFC-normalises), HTML entities unescaped twice, then the
      whitespace rule. Lower-casing is left to the tokenizer (CLIP's ``tokenizer.json`` lower-cases).
    """
    if rule == "open_clip":
        import html

        try:
            import ftfy
        except ImportError as exc:
            raise ModelError("open_clip models clean queries with ftfy; pip install ftfy") from exc
        text = html.unescape(html.unescape(ftfy.fix_text(text)))
    elif rule not in CLEAN_RULES:
        raise ModelError(f"unknown text cleaning rule {rule!r}; expected one of {', '.join(CLEAN_RULES)}")
    text = " ".join(text.split())
    return text.translate(_PUNCTUATION).lower() if rule == "canonicalize" else text


@dataclass(frozen=True)
class TokenBatch:
    """Token ids and attention mask of a batch: both ``int64[n, length]`` (mask: 1 = real token)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray


def _pad_id_from(data: dict) -> int | None:
    """The padding id stored in a ``tokenizer.json`` (its padding section), if any."""
    padding = data.get("padding")
    if isinstance(padding, dict) and isinstance(padding.get("pad_id"), int):
        return int(padding["pad_id"])
    return None


class TextTokenizer:
    """Tokenizes texts for one model: ``tokenizer.json`` + context length + padding rule.

    ``pad_id``: id used for padding; ``None`` takes the id of ``pad_token`` in the vocabulary, else the
    one the ``tokenizer.json`` declares. ``padding_side``: where the padding goes (Gemma / SigLIP2
    tokenizers pad on the left, as their checkpoints' tokenizer classes declare).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        context_length: int,
        padding: Literal["longest", "max_length"] = "longest",
        pad_id: int | None = None,
        pad_token: str | None = None,
        padding_side: Literal["right", "left"] = "right",
    ) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise ModelError("the ONNX runtime needs the tokenizers package; pip install tokenizers") from exc
        path = Path(path)
        try:
            text = compact_source(path)
            self._tok = Tokenizer.from_str(text)
        except FileNotFoundError as exc:
            raise ModelError(f"no {path.name} in {path.parent}; re-export the model with `glimpse export`") from exc
        except Exception as exc:  # tokenizers raises plain Exception subclasses on bad JSON
            raise ModelError(f"cannot read tokenizer {path} ({exc}); re-export the model") from exc
        if context_length < 2:
            raise ModelError(f"context_length must be at least 2, got {context_length}")
        # A configured pad token (immich: tokenizer_config.json's) wins over the padding the file declares.
        if pad_id is None and pad_token is not None:
            pad_id = self._tok.token_to_id(pad_token)
        if pad_id is None:
            pad_id = _pad_id_from(json.loads(text))
        if pad_id is None:
            raise ModelError(
                f"{path} declares no padding token and none was given; re-export the model with `glimpse export`"
            )
        self.path = path
        self.context_length = int(context_length)
        self.padding = padding
        self.pad_id = int(pad_id)
        if padding_side not in ("right", "left"):
            raise ModelError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        self.padding_side = padding_side
        # Our own truncation/padding rules replace whatever the file configured (e.g. immich's fixed 77).
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=self.context_length)

    def encode(self, texts: Sequence[str]) -> TokenBatch:
        """Tokenize ``texts`` -> :class:`TokenBatch` with ``int64[n, L]`` arrays.

        ``L`` is the longest text's length (``"longest"``) or ``context_length`` (``"max_length"``).
        """
        if isinstance(texts, str):
            raise UserInputError("encode takes a list of strings, not one string")
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=True)
        longest = max((len(e.ids) for e in encodings), default=0)
        length = self.context_length if self.padding == "max_length" else max(longest, 1)
        ids = np.full((len(encodings), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), length), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            start = length - n if self.padding_side == "left" else 0
            ids[row, start : start + n] = enc.ids
            mask[row, start : start + n] = 1
        return TokenBatch(ids, mask)

    def ids(self, text: str) -> list[int]:
        """The ids of one text, unpadded (special tokens included, truncated to the context length)."""
        return list(self._tok.encode(text, add_special_tokens=True).ids)
