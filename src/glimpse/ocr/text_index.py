"""The full-text side of OCR: the one normalisation rule, the ``text:`` query syntax, and the fusion rule.

**Normalisation** (:func:`normalize_text`, applied to stored lines and to queries alike): Unicode NFKC
(full-width ``ＥＸＩＴ`` → ``EXIT``, ``①`` → ``1``, compatibility ideographs → their unified forms), then
``casefold`` (``Straße`` → ``strasse``), then every whitespace run removed. Spaces are dropped because the
recogniser drops most of them between Latin words ("Fresh Coffee" is read as "FreshCoffee"): a query for the
phrase ``fresh coffee`` must find both, so neither side keeps them. The original text is stored beside the
normalised one and is what users see.

**Matching** is substring matching on the normalised line (inside words too, for Latin as for Chinese): a
term matches a line that contains it. So a word, a phrase, a prefix (``exi*``, accepted and equal to
``exi``) and a word's middle all match. Terms of 3 or more characters are answered by the SQLite FTS5
``trigram`` index; shorter ones (the Chinese word ``出口``, a 2-letter code) cannot use trigrams and are
answered by a scan of the normalised lines (``instr``), which costs a pass over the stored text.

**Query syntax**: ``text:exit``, ``text:"exit sign"`` (quoted: one phrase), ``text:出口`` anywhere in a search
query. Several ``text:`` terms must all match (each on some line of the image). What is left of the query
is the CLIP part: empty → a full-text search; otherwise the CLIP ranking filtered to images whose text
matches (as ``--text``).

**Fusion** (:func:`fuse`): reciprocal-rank fusion, ``1/(K + clip_rank) + text_weight/(K + text_rank)`` with
``K = 60`` (the constant of Cormack et al. 2009); an image absent from one ranking gets nothing from it.
``DEFAULT_TEXT_WEIGHT = 1.0`` weighs both rankings equally: images found by one side only interleave rank by
rank with the other side's, and an image both sides found rises above them (CLIP rank 10 and text rank 1
beat CLIP rank 1 alone). A larger weight favours the text ranking; 0 leaves CLIP's alone.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from glimpse.errors import UserInputError

#: Terms at least this long (normalised, in characters) use the trigram index; shorter ones a substring scan.
TRIGRAM_MIN = 3
#: A plain (CLIP) query's OCR side is skipped for terms shorter than this: one letter matches most text.
PLAIN_QUERY_MIN = 2
RRF_K = 60
DEFAULT_TEXT_WEIGHT = 1.0
MATCH_CLIP, MATCH_OCR, MATCH_BOTH = "clip", "ocr", "both"

_WHITESPACE = re.compile(r"\s+")
# text:"a phrase" | text:word ; "text:" must start a word, so "context:x" is no text term.
_TEXT_TERM = re.compile(r'(?<!\S)text:(?:"((?:[^"]|"")*)"|(\S*))', re.IGNORECASE)


def normalize_text(text: str) -> str:
    """The form stored lines and queries are compared in: NFKC, casefolded, whitespace removed."""
    return _WHITESPACE.sub("", unicodedata.normalize("NFKC", text).casefold())


@dataclass(frozen=True)
class TextQuery:
    """Normalised terms that must all match (each a substring of some line of the image)."""

    terms: tuple[str, ...]

    def describe(self) -> str:
        return " ".join(f'text:"{t}"' for t in self.terms)


def _term(raw: str, source: str) -> str:
    """One normalised term; a trailing ``*`` (prefix) is dropped: substring matching covers prefixes."""
    stripped = raw.strip()
    if stripped.endswith("*"):
        stripped = stripped.rstrip("*")
    term = normalize_text(stripped)
    if not term:
        raise UserInputError(
            f"empty text term in {source!r}: write text:word or text:\"a phrase\" (e.g. text:\"exit\")"
        )
    if "*" in term:
        raise UserInputError(
            f"text term {raw!r}: '*' is accepted only at the end (a prefix); matching is by substring anyway"
        )
    return term


def text_terms(values: Iterable[str], source: str = "--text") -> TextQuery | None:
    """A :class:`TextQuery` from plain strings (``--text total``: each value one phrase); None when none."""
    terms = tuple(_term(v, source) for v in values)
    return TextQuery(terms) if terms else None


def split_text_terms(query: str) -> tuple[str, TextQuery | None]:
    """``(the rest of the query for CLIP, its text: terms)``; the rest is stripped, None when no term."""
    found: list[str] = []

    def take(match: re.Match[str]) -> str:
        quoted, bare = match.group(1), match.group(2)
        if quoted is None and bare.startswith('"'):
            raise UserInputError(f'unclosed quote in {query!r}: write text:"a phrase"')
        found.append(_term(quoted.replace('""', '"') if quoted is not None else bare, query))
        return " "
    rest = _TEXT_TERM.sub(take, query)
    return _WHITESPACE.sub(" ", rest).strip(), (TextQuery(tuple(found)) if found else None)


def merge(*queries: TextQuery | None) -> TextQuery | None:
    """All terms of the given queries (None for none)."""
    terms = tuple(t for q in queries if q is not None for t in q.terms)
    return TextQuery(tuple(dict.fromkeys(terms))) if terms else None


def plain_query_terms(texts: Sequence[str]) -> TextQuery | None:
    """The OCR side of a plain query: its positive text terms, normalised, each a phrase; None when every
    term is shorter than ``PLAIN_QUERY_MIN`` characters (then the query is CLIP only)."""
    terms = tuple(dict.fromkeys(normalize_text(t) for t in texts))
    if not terms or any(len(t) < PLAIN_QUERY_MIN for t in terms):
        return None
    return TextQuery(terms)


def fts_phrase(term: str) -> str:
    """``term`` as an FTS5 phrase (double quotes doubled): with the trigram tokenizer, a substring match."""
    return '"' + term.replace('"', '""') + '"'


def line_score(term: str, norm_line: str, confidence: float) -> float:
    """How well one line answers one term, in (0, 1]: the recogniser's confidence times the share of the
    line the term covers (an exact line "EXIT" beats "EMERGENCYEXITONLY")."""
    return float(confidence) * len(term) / max(len(norm_line), len(term))


def fuse(clip_ranked: Sequence[int], text_ranked: Sequence[int], text_weight: float = DEFAULT_TEXT_WEIGHT
         ) -> list[tuple[int, float, str]]:
    """Reciprocal-rank fusion of two best-first id lists: ``(id, fused score, match)`` best first, where
    match is ``"clip"``, ``"ocr"`` or ``"both"``. Ties keep the CLIP order, then the text order."""
    scores: dict[int, float] = {}
    found: dict[int, set[str]] = {}
    for rank, file_id in enumerate(clip_ranked, start=1):
        scores[file_id] = scores.get(file_id, 0.0) + 1.0 / (RRF_K + rank)
        found.setdefault(file_id, set()).add(MATCH_CLIP)
    if text_weight > 0:
        for rank, file_id in enumerate(text_ranked, start=1):
            scores[file_id] = scores.get(file_id, 0.0) + text_weight / (RRF_K + rank)
            found.setdefault(file_id, set()).add(MATCH_OCR)
    first: dict[int, int] = {}
    for n, file_id in enumerate([*clip_ranked, *text_ranked]):
        first.setdefault(file_id, n)
    ranked = sorted(scores, key=lambda i: (-scores[i], first[i]))
    return [(i, scores[i], MATCH_BOTH if len(found[i]) == 2 else next(iter(found[i]))) for i in ranked]


def check_text_weight(weight: float) -> float:
    """``weight`` when usable (finite, ≥ 0); else UserInputError."""
    if not (weight >= 0 and weight != float("inf")):
        raise UserInputError(f"--text-weight must be a number ≥ 0 (0: CLIP only), got {weight}")
    return float(weight)
