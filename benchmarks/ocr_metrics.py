"""OCR accuracy metrics for the issue 15 [H] benchmark: pure functions on ground truth and predictions.

Normalisation (``normalise``): Unicode NFKC (full-width -> half-width, compatibility forms), then
``str.casefold``, then every whitespace character removed. Both sides are normalised before any
comparison, so case, width and spacing never count as errors (the PP-OCR recognisers drop the space between
Latin words: "Fresh Coffee" -> "FreshCoffee"; that is what the substring metrics below tolerate).

Inputs, per image: ground truth ``list[GtLine]`` (text, script "en"/"zh", optional polygon) and
predictions ``list[PredLine]`` (text, confidence, optional 4-point box). Script of a prediction: "zh"
when it contains a CJK ideograph, else "en".

* Line match (``line_matches(gt, pred)``): normalised similarity ``1 - lev(g, p) / max(|g|, |p|)`` >=
  ``threshold`` (0.8), or ``g`` contained in ``p`` (the detector merged it with neighbouring text).
  Line recall: GT lines with a matching prediction / GT lines. Line precision: predictions that match a
  GT line, or whose normalised text (>= 2 characters) lies inside a GT line (a correct reading of part of
  it, e.g. one word of a phrase split by the detector) / predictions.
* CER: over matched GT lines only, sum of the *substring* edit distance (the cheapest edit of ``g`` into
  any substring of the matched prediction, so merged neighbouring text is not an error) / sum of ``|g|``.
* Whitespace words: a line's words are its text split on whitespace, each normalised. Word recall /
  precision: per image, the multiset intersection of GT words and predicted words, over GT / predicted
  word counts. (A Chinese item has no spaces, so it is one word.)
* Substring words: a GT word is found when it occurs inside some prediction's normalised text of the same
  image; a predicted word is correct when it occurs inside some GT line's normalised text of that image, or
  inside two GT lines of that image joined (either order): a detector line over two items that stand side
  by side ("三楼" beside "香蕉" read as "三楼香蕉"). Recall has always counted such a merged line (each item
  is inside it); from 2026-12-03 precision counts it too (``word_in_truth``).
* Text search R@1 (``search_recall_at_1``): each distinct normalised GT word (>= 2 characters) is a query;
  an image matches when one of its predicted lines contains the query; matching images are ranked by that
  line's best confidence; a hit when the top image is one whose GT text contains the query (usually the one
  image it was rendered on; a tie at the top is a hit only when all tied images are). No match is a miss.

Predictions can be restricted to the ground truth's regions (``inside_gt``) for photos that carry their own,
unlabelled text (coco128 has stop signs, buses, shop signs, even a Chinese site board): a prediction counts
only when its box and one GT item's polygon (the exact rotated, perspective-jittered quad the generator
drew) overlap by at least half of the smaller of the two (``overlap_fraction``). Photo text under or around
a rendered item still counts, so set (a) precision is a lower bound. (Until 2026-12-03 the test was half of
the box's bounding rectangle inside the polygon's bounding rectangle; for an item rotated 15-20 degrees that
rectangle is much larger than the text, and 7 of the 10 English words then scored wrong on set (a) were the
photo's own text beside a rotated item: HELLO KITTY, STOP, ALDWYCH. Half of the *box* inside the polygon
would not do either: a detector box is larger than the ink, and 18 correct readings fell under it.)
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

SCRIPTS = ("en", "zh")
LINE_THRESHOLD = 0.8
MIN_PART = 2  # a prediction inside a GT line counts as a correct partial reading from this many characters
INSIDE_FRACTION = 0.5  # on set (a), a prediction is scored when it overlaps a GT item this much (overlap_fraction)


@dataclass(frozen=True)
class GtLine:
    """One ground-truth text item: ``polygon`` is 4 (x, y) points in image pixels, or empty if unknown."""

    text: str
    script: str
    polygon: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class PredLine:
    """One recognised line: ``confidence`` in [0, 1]; ``box`` 4 (x, y) points or empty."""

    text: str
    confidence: float = 1.0
    box: tuple[tuple[float, float], ...] = ()


def normalise(text: str) -> str:
    """NFKC, casefold, all whitespace removed."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if not ch.isspace())


def words(text: str) -> list[str]:
    """The line's whitespace-separated words, each normalised (empty ones dropped)."""
    return [w for w in (normalise(part) for part in text.split()) if w]


def is_cjk(ch: str) -> bool:
    """True for a CJK unified ideograph (basic block and extension A, compatibility ideographs)."""
    code = ord(ch)
    return 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF


def script_of(text: str) -> str:
    """ "zh" when ``text`` holds a CJK ideograph, else "en"."""
    return "zh" if any(is_cjk(ch) for ch in text) else "en"


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute; each costs 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def substring_distance(needle: str, hay: str) -> int:
    """The fewest edits turning ``needle`` into some substring of ``hay`` (0 when it is contained)."""
    previous = [0] * (len(hay) + 1)  # a match may start anywhere in hay for free
    for i, cn in enumerate(needle, 1):
        current = [i]
        for j, ch in enumerate(hay, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (cn != ch)))
        previous = current
    return min(previous)  # ... and end anywhere


def similarity(a: str, b: str) -> float:
    """``1 - levenshtein(a, b) / max(len)`` on already normalised strings; 1.0 for two empty strings."""
    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1.0 - levenshtein(a, b) / longest


def line_matches(gt: str, pred: str, threshold: float = LINE_THRESHOLD) -> bool:
    """Does prediction ``pred`` read GT line ``gt`` (both normalised)? See the module docstring."""
    if not gt or not pred:
        return False
    return gt in pred or similarity(gt, pred) >= threshold


def word_in_truth(word: str, gts: Sequence[str]) -> bool:
    """Is normalised predicted ``word`` inside one of the image's normalised GT lines, or inside two of them
    joined in either order (one detector line over two neighbouring items)?"""
    if any(word in g for g in gts):
        return True
    return any(word in a + b for i, a in enumerate(gts) for j, b in enumerate(gts) if i != j)


def pred_correct(pred: str, gts: Iterable[str], threshold: float = LINE_THRESHOLD) -> bool:
    """Is normalised prediction ``pred`` a correct reading of (part of) one of the normalised GT lines?"""
    return any(line_matches(g, pred, threshold) or (len(pred) >= MIN_PART and pred in g) for g in gts)


Point = tuple[float, float]


def _signed_area(poly: Sequence[Point]) -> float:
    """Shoelace area of a polygon, positive when its points turn counter-clockwise (y up)."""
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(poly, [*poly[1:], poly[0]], strict=True))


def _convex_hull(points: Sequence[Point]) -> list[Point]:
    """Counter-clockwise convex hull (monotone chain); a quad drawn with jittered corners may be slightly
    concave, and clipping needs a convex, consistently turning clip polygon."""
    pts = sorted(set(points))
    if len(pts) < 3:
        return pts

    def cross(o: Point, a: Point, b: Point) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[Point] = []
    upper: list[Point] = []
    for chain, seq in ((lower, pts), (upper, pts[::-1])):
        for p in seq:
            while len(chain) >= 2 and cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
    return lower[:-1] + upper[:-1]


def _clip(subject: Sequence[Point], hull: Sequence[Point]) -> list[Point]:
    """``subject`` clipped to the counter-clockwise convex polygon ``hull`` (Sutherland-Hodgman)."""
    out = list(subject)
    for a, b in zip(hull, [*hull[1:], hull[0]], strict=True):
        if not out:
            break

        def side(p: Point, a: Point = a, b: Point = b) -> float:
            return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])

        src, out = out, []
        for p, q in zip(src, [*src[1:], src[0]], strict=True):
            sp, sq = side(p), side(q)
            if sp >= 0:
                out.append(p)
            if (sp >= 0) != (sq >= 0):
                t = sp / (sp - sq)
                out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
    return out


def overlap_fraction(box: Sequence[Point], polygon: Sequence[Point]) -> float:
    """How much the two shapes (the hulls of their points) overlap: their intersection's area over the area of
    the smaller one (1.0 when one lies inside the other, 0.0 when they are apart)."""
    subject, hull = _convex_hull(box), _convex_hull(polygon)
    if len(subject) < 3 or len(hull) < 3:
        return 0.0
    smaller = min(abs(_signed_area(subject)), abs(_signed_area(hull)))
    inter = _clip(subject, hull)
    return abs(_signed_area(inter)) / smaller if smaller > 0 and len(inter) >= 3 else 0.0


def inside_gt(preds: Sequence[PredLine], gts: Sequence[GtLine],
              min_fraction: float = INSIDE_FRACTION) -> list[PredLine]:
    """The predictions lying on a GT item: ``overlap_fraction`` of the box and one GT polygon at least
    ``min_fraction`` (predictions or GT without geometry are kept). Over the smaller shape, because a
    detector box is larger than the ink box a polygon is (unclipped, lengthened at the ends): a correct
    reading covers the item while little of its box is ink, and a partial reading lies inside it."""
    polygons = [g.polygon for g in gts if g.polygon]
    if not polygons:
        return list(preds)
    return [p for p in preds
            if not p.box or max(overlap_fraction(p.box, poly) for poly in polygons) >= min_fraction]


@dataclass
class Counts:
    """Sums over images for one script; the ratios are properties (0/0 reads as nan)."""

    gt_lines: int = 0
    gt_found: int = 0
    pred_lines: int = 0
    pred_correct: int = 0
    cer_edits: int = 0
    cer_chars: int = 0
    gt_words: int = 0
    gt_words_found: int = 0
    pred_words: int = 0
    pred_words_correct: int = 0
    gt_words_sub_found: int = 0
    pred_words_sub_correct: int = 0
    pred_outside: int = 0

    @staticmethod
    def _ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    @property
    def line_recall(self) -> float:
        return self._ratio(self.gt_found, self.gt_lines)

    @property
    def line_precision(self) -> float:
        return self._ratio(self.pred_correct, self.pred_lines)

    @property
    def cer(self) -> float:
        return self._ratio(self.cer_edits, self.cer_chars)

    @property
    def word_recall(self) -> float:
        return self._ratio(self.gt_words_found, self.gt_words)

    @property
    def word_precision(self) -> float:
        return self._ratio(self.pred_words_correct, self.pred_words)

    @property
    def sub_word_recall(self) -> float:
        return self._ratio(self.gt_words_sub_found, self.gt_words)

    @property
    def sub_word_precision(self) -> float:
        return self._ratio(self.pred_words_sub_correct, self.pred_words)


@dataclass
class Scores:
    """Per-script counts plus the search result; ``by_script["all"]`` pools both scripts."""

    by_script: dict[str, Counts] = field(default_factory=lambda: {s: Counts() for s in (*SCRIPTS, "all")})
    search_queries: dict[str, int] = field(default_factory=lambda: {s: 0 for s in (*SCRIPTS, "all")})
    search_hits: dict[str, int] = field(default_factory=lambda: {s: 0 for s in (*SCRIPTS, "all")})

    def search_r1(self, script: str) -> float:
        q = self.search_queries[script]
        return self.search_hits[script] / q if q else float("nan")


def score_image(gts: Sequence[GtLine], preds: Sequence[PredLine], into: Scores,
                threshold: float = LINE_THRESHOLD, only_inside: bool = False) -> None:
    """Add one image's line, CER and word counts to ``into`` (per script and pooled).

    ``only_inside``: precision counts only the predictions ``inside_gt`` keeps (the rest are counted as
    ``pred_outside``); recall always uses every prediction (text search does not look at boxes).
    """
    scored = list(preds)
    if only_inside:
        scored = inside_gt(preds, gts)
        kept_ids = {id(p) for p in scored}
        for p in (p for p in preds if id(p) not in kept_ids):
            for s in (script_of(p.text), "all"):
                into.by_script[s].pred_outside += 1
    gt_norm = [normalise(g.text) for g in gts]
    pred_norm = [normalise(p.text) for p in preds]
    for g, gn in zip(gts, gt_norm, strict=True):
        matched = [pn for pn in pred_norm if line_matches(gn, pn, threshold)]
        gw = words(g.text)
        for s in (g.script, "all"):
            c = into.by_script[s]
            c.gt_lines += 1
            c.gt_words += len(gw)
            c.gt_words_sub_found += sum(any(w in pn for pn in pred_norm) for w in gw)
            if matched:
                c.gt_found += 1
                c.cer_edits += min(substring_distance(gn, pn) for pn in matched)
                c.cer_chars += len(gn)
    for p in scored:
        pn = normalise(p.text)
        if not pn:
            continue
        pw = words(p.text)
        for s in (script_of(p.text), "all"):
            c = into.by_script[s]
            c.pred_lines += 1
            c.pred_correct += pred_correct(pn, gt_norm, threshold)
            c.pred_words += len(pw)
            c.pred_words_sub_correct += sum(word_in_truth(w, gt_norm) for w in pw)
    # Whitespace words: multiset intersection per script (GT words by the item's script, predicted words
    # by their own characters); recall against every prediction, precision against the scored ones.
    for s in SCRIPTS:
        gw = Counter(w for g in gts if g.script == s for w in words(g.text))
        found = sum((gw & Counter(w for p in preds for w in words(p.text) if script_of(w) == s)).values())
        correct = sum((gw & Counter(w for p in scored for w in words(p.text) if script_of(w) == s)).values())
        for key in (s, "all"):
            into.by_script[key].gt_words_found += found
            into.by_script[key].pred_words_correct += correct


def search_recall_at_1(truth: dict[str, Sequence[GtLine]], predicted: dict[str, Sequence[PredLine]],
                       into: Scores) -> None:
    """Text-search R@1 over all images (see the module docstring); adds queries and hits to ``into``.

    ``truth`` and ``predicted`` map an image id to its lines. A tie on confidence at the top is a hit only
    when every tied image is relevant.
    """
    gt_text = {img: [normalise(g.text) for g in lines] for img, lines in truth.items()}
    pred_lines = {img: [(normalise(p.text), p.confidence) for p in predicted.get(img, ())] for img in truth}
    queries: dict[str, str] = {}
    for lines in truth.values():
        for g in lines:
            for w in words(g.text):
                if len(w) >= 2:
                    queries.setdefault(w, g.script)
    for query, script in sorted(queries.items()):
        scored = {}
        for img in truth:
            conf = max((c for pn, c in pred_lines[img] if query in pn), default=None)
            if conf is not None:
                scored[img] = conf
        top = max(scored.values(), default=None)
        leaders = [img for img, c in scored.items() if c == top]
        # A tie at the top is a hit only when every tied image is relevant (ties never help the target).
        hit = bool(leaders) and all(any(query in gn for gn in gt_text[img]) for img in leaders)
        for s in (script, "all"):
            into.search_queries[s] += 1
            into.search_hits[s] += hit
