"""Moderation: a TOML policy of categories scored zero-shot, with thresholds, actions and an audit log.

Policy file (a complete one ships as ``examples/moderation-policy.toml``; ``glimpse moderate --help`` and
the README show this format too)::

    templates = "photo"             # optional: template set/file for the prompts (default: prompts used as is)

    [[category]]
    name = "weapons"
    positive = ["a gun", "a rifle"]     # what the category looks like
    negative = ["a toy gun", "a drill"] # look-alikes that must not trigger it (default: ["a photo"])
    threshold = 0.7                     # score at or above which the category triggers
    action = "reject"                   # "flag" or "reject"

A category's score is ``sigmoid(logit_scale * (max cos(positive) - max cos(negative)))``: the two-way
softmax between the best positive and the best negative prompt, with the model's own logit scale, so 0.5
means "as much like a look-alike as like the category". An image gets the most severe action among its
triggered categories (reject > flag > allow).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glimpse.errors import UserInputError

if TYPE_CHECKING:
    from glimpse.encoders.base import Encoder
    from glimpse.zeroshot import TextCache

ACTIONS = ("allow", "flag", "reject")
_SEVERITY = {name: i for i, name in enumerate(ACTIONS)}
DEFAULT_NEGATIVE = ("a photo",)


@dataclass(frozen=True)
class Category:
    name: str
    positive: tuple[str, ...]
    negative: tuple[str, ...] = DEFAULT_NEGATIVE
    threshold: float = 0.5
    action: str = "flag"


@dataclass(frozen=True)
class Policy:
    categories: tuple[Category, ...]
    templates: str | None = None
    source: str = ""
    digest: str = ""  # sha256 of the policy file, recorded in the audit log

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        """Read and validate a TOML policy file."""
        try:
            raw = Path(path).expanduser().read_bytes()
            data = tomllib.loads(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise UserInputError(f"cannot read policy file {path} ({exc})") from exc
        except tomllib.TOMLDecodeError as exc:
            raise UserInputError(f"policy file {path} is not valid TOML ({exc})") from exc
        return cls.from_dict(data, str(path), hashlib.sha256(raw).hexdigest())

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "policy", digest: str = "") -> Policy:
        items = data.get("category")
        if not isinstance(items, list) or not items:
            raise UserInputError(f"{source} has no categories; add [[category]] tables with name, positive, threshold")
        categories = []
        for n, item in enumerate(items, 1):
            categories.append(_category(item, f"{source} category #{n}"))
        names = [c.name for c in categories]
        if len(set(names)) != len(names):
            raise UserInputError(f"{source}: category names must be distinct, got {names}")
        templates = data.get("templates")
        if templates is not None and not isinstance(templates, str):
            raise UserInputError(f"{source}: templates must be a template set name or file path")
        return cls(tuple(categories), templates, source, digest)

    def to_toml(self) -> str:
        """The policy as TOML (JSON string escapes are valid TOML basic strings)."""
        lines = [f"templates = {json.dumps(self.templates)}", ""] if self.templates else []
        for c in self.categories:
            lines += [
                "[[category]]",
                f"name = {json.dumps(c.name, ensure_ascii=False)}",
                f"positive = {json.dumps(list(c.positive), ensure_ascii=False)}",
                f"negative = {json.dumps(list(c.negative), ensure_ascii=False)}",
                f"threshold = {c.threshold:.6g}",
                f"action = {json.dumps(c.action)}",
                "",
            ]
        return "\n".join(lines)


def _strings(value: Any, what: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise UserInputError(f"{where}: {what} must be a non-empty list of prompt strings")
    return tuple(v.strip() for v in value)


def _category(item: Any, where: str) -> Category:
    if not isinstance(item, dict):
        raise UserInputError(f"{where} must be a table")
    unknown = set(item) - {"name", "positive", "negative", "threshold", "action"}
    if unknown:
        raise UserInputError(f"{where}: unknown keys {sorted(unknown)}; expected name, positive, negative, "
                             "threshold, action")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise UserInputError(f"{where}: name must be a non-empty string")
    where = f"{where} ({name})"
    threshold = item.get("threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise UserInputError(f"{where}: threshold must be a number in [0, 1], got {threshold!r}")
    action = item.get("action", "flag")
    if action not in ("flag", "reject"):
        raise UserInputError(f"{where}: action must be 'flag' or 'reject', got {action!r}")
    negative = _strings(item["negative"], "negative", where) if "negative" in item else DEFAULT_NEGATIVE
    return Category(name.strip(), _strings(item.get("positive"), "positive", where), negative, float(threshold),
                    action)


@dataclass
class Moderator:
    """A policy bound to one model: prompt embeddings computed once, scores for any image vectors."""

    policy: Policy
    model_key: str
    scale: float
    positives: list[np.ndarray] = field(repr=False)  # per category float32[p, d]
    negatives: list[np.ndarray] = field(repr=False)

    @classmethod
    def build(cls, policy: Policy, encoder: Encoder, cache: TextCache | None = None) -> Moderator:
        from glimpse.templates import load_templates
        from glimpse.zeroshot import TextCache, class_embeddings

        cache = cache or TextCache(None, encoder.key)
        templates = load_templates(policy.templates) if policy.templates else None

        def embed(prompts: Sequence[str]) -> np.ndarray:
            if templates is None:
                return cache.encode(encoder, list(prompts))
            # Ensemble each prompt over the templates, like zero-shot class names.
            return class_embeddings(encoder, list(prompts), templates, cache)

        return cls(policy, encoder.key, float(encoder.spec.logit_scale),
                   [embed(c.positive) for c in policy.categories], [embed(c.negative) for c in policy.categories])

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """``float32[n, categories]`` category scores of L2-normalised image vectors ``float32[n, d]``."""
        vectors = np.asarray(vectors, dtype=np.float32)
        out = np.empty((len(vectors), len(self.policy.categories)), dtype=np.float32)
        for j, (pos, neg) in enumerate(zip(self.positives, self.negatives, strict=True)):
            margin = (vectors @ pos.T).max(axis=1) - (vectors @ neg.T).max(axis=1)
            out[:, j] = 1.0 / (1.0 + np.exp(-self.scale * margin.astype(np.float64)))
        return out

    def decide(self, paths: Sequence[str], vectors: np.ndarray) -> list[dict[str, Any]]:
        """Per image: action, triggered categories and every category score."""
        results = []
        scores = self.scores(vectors)
        for path, row in zip(paths, scores, strict=True):
            triggered = [c for c, s in zip(self.policy.categories, row, strict=True) if s >= c.threshold]
            action = max((c.action for c in triggered), key=_SEVERITY.__getitem__, default="allow")
            results.append({
                "path": os.fsencode(path).decode("utf-8", "replace"),
                "action": action,
                "triggered": [c.name for c in triggered],
                "scores": {c.name: round(float(s), 6) for c, s in zip(self.policy.categories, row, strict=True)},
            })
        return results


def append_audit(path: str | os.PathLike[str], results: Sequence[dict[str, Any]], policy: Policy,
                 model_key: str) -> None:
    """Append one JSON line per decision (append-only; flushed and fsynced before returning)."""
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as handle:
        for result in results:
            record = {"time": now, "model_key": model_key, "policy": policy.source, "policy_sha256": policy.digest,
                      **result}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def calibrate(moderator: Moderator, vectors: np.ndarray, positives: np.ndarray, target_precision: float
              ) -> list[dict[str, Any]]:
    """Per category, the lowest threshold whose precision on labelled examples is >= ``target_precision``.

    ``positives``: ``bool[n, categories]``, true where image ``i`` belongs to category ``j``. The lowest
    such threshold gives the most recall at that precision. A category that never reaches the target keeps
    its threshold and is reported with ``"reached": false``.
    """
    if not 0 < target_precision <= 1:
        raise UserInputError(f"target precision must be in (0, 1], got {target_precision}")
    scores = moderator.scores(vectors)
    out = []
    for j, category in enumerate(moderator.policy.categories):
        truth = positives[:, j]
        order = np.argsort(-scores[:, j], kind="stable")
        hits = np.cumsum(truth[order])
        precision = hits / np.arange(1, len(order) + 1)
        best = None
        for k in range(len(order)):
            # A threshold can only cut between distinct scores.
            if k + 1 < len(order) and scores[order[k + 1], j] == scores[order[k], j]:
                continue
            if precision[k] >= target_precision and hits[k] > 0:
                best = k
        entry: dict[str, Any] = {"category": category.name, "positives": int(truth.sum()), "reached": best is not None}
        if best is not None:
            entry.update(threshold=float(scores[order[best], j]), precision=float(precision[best]),
                         recall=float(hits[best] / max(1, truth.sum())))
        else:
            entry.update(threshold=category.threshold)
        out.append(entry)
    return out


def with_thresholds(policy: Policy, calibrated: Sequence[dict[str, Any]]) -> Policy:
    """The policy with the thresholds found by :func:`calibrate` (unreached categories unchanged)."""
    new = {c["category"]: c["threshold"] for c in calibrated if c["reached"]}
    categories = tuple(Category(c.name, c.positive, c.negative, round(new.get(c.name, c.threshold), 6), c.action)
                       for c in policy.categories)
    return Policy(categories, policy.templates, policy.source, policy.digest)
