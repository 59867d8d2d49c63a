"""Test support for the CLIP tagger: a small slice of the built-in vocabulary.

The built-in vocabulary has over 2,000 tags x 16 prompt templates; embedding it with even a tiny CLIP takes
minutes on a shared CPU. CLI tests point ``$GLIMPSE_TAG_VOCABULARY`` at this slice (real rows of the built-in
file, so the names, Chinese names and categories are the product's) and keep the default library (where the
prompt-embedding cache lives) inside the test's temporary directory.

The slice is the animal and food sections (the first rows) plus a few rows the tests name, less ``LEFT_OUT``:
the tag-filter and facet tests need some tags to pass the default threshold (3 standard deviations above the
slice's mean similarity) on the synthetic photos with the tiny random CLIP (16-d embeddings, the small trained
tokenizer of tests/tiny_models.py). ``LEFT_OUT`` was computed once from that model's similarities on
``make_photo`` seeds 0-9, 99 and 100: the rows most like its two top tags (croissant, dessert), left out until
those stand 3.5 standard deviations out on every one of those photos (other rows the tests name are kept).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from glimpse.tagging.vocab import VOCABULARY_ENV

NEEDED = {"car", "person", "beach", "tree", "sky", "building", "red", "running"}
FIRST_ROWS = 419
LEFT_OUT = frozenset({
    "ant", "ape", "apricot", "armadillo", "avocado", "basil", "bean", "bear", "beaver", "beet", "berry", "biscuit",
    "bison", "black cat", "blueberry", "burrito", "carrot", "chameleon", "cheese", "cheetah", "cherry", "chestnut",
    "chick", "clam", "cola", "corn", "cow", "crab", "cricket insect", "crocodile", "crow", "curry", "dachshund",
    "dalmatian", "dim sum", "dinner", "dinosaur", "dish", "drink", "duck", "durian", "elk", "emu", "espresso",
    "ferret", "fish", "ham", "hawk", "horse", "hot pot", "hyena", "insect", "jam", "jellyfish", "leek", "lime",
    "lion", "lioness", "livestock", "lychee", "mayonnaise", "milk", "mint", "mole", "moose", "moth", "mushroom",
    "nachos", "noodle", "olive", "ostrich", "owl", "oyster", "parrot", "pastry", "persian cat", "persimmon",
    "pizza", "pork", "porridge", "rabbit", "raccoon", "radish", "ramen", "raspberry", "rat", "raven", "red wine",
    "reindeer", "rhinoceros", "rice", "risotto", "roast", "robin", "rooster", "salad", "salmon", "salt", "sandwich",
    "sashimi", "scorpion", "sea lion", "sea urchin", "seal", "shark", "sheep", "shiba inu", "shrimp", "siamese cat",
    "skunk", "smoothie", "snack", "snail", "soda", "soup", "spaghetti", "sparrow", "spice", "spider", "spinach",
    "steak", "stew", "stork", "strawberry", "street food", "sushi", "swallow", "swan", "sweet potato", "terrier",
    "toast", "walrus", "wasp", "watermelon", "weasel", "white wine", "wildlife", "wine", "worm", "yak"
})  # fmt: skip


def write_small_vocabulary(path: Path) -> Path:
    """The first ``FIRST_ROWS`` built-in rows plus those of ``NEEDED``, less ``LEFT_OUT``, in the file's format."""
    text = resources.files("glimpse.tagging").joinpath("data/vocab.tsv").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line and not line.startswith("#")]
    kept = [r for i, r in enumerate(rows)
            if (i < FIRST_ROWS or r.split("\t")[0] in NEEDED) and r.split("\t")[0] not in LEFT_OUT]
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


def use_small_vocabulary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the CLIP tagger at the small vocabulary and the default library into ``tmp_path``."""
    path = write_small_vocabulary(tmp_path / "small-vocab.tsv")
    monkeypatch.setenv(VOCABULARY_ENV, str(path))
    monkeypatch.setenv("GLIMPSE_LIBRARY", str(tmp_path / "default-library"))
    return path


_runner = None


def run(*args: str) -> tuple[int, str]:
    """Run the ``glimpse`` CLI in-process; returns (exit code, stdout)."""
    global _runner
    from typer.testing import CliRunner

    from glimpse.cli import app

    _runner = _runner or CliRunner()
    result = _runner.invoke(app, list(args))
    return result.exit_code, result.stdout

