"""Prompt templates: named sets shipped in ``glimpse/data/templates/*.txt`` or a user's file.

A template is a string with one ``{}`` where the class name goes (``"a photo of a {}."``). Files hold one
template per line; blank lines and lines starting with ``#`` are ignored.
"""

from __future__ import annotations

from pathlib import Path

from glimpse.errors import UserInputError

TEMPLATES_DIR = Path(__file__).resolve().parent / "data" / "templates"
DEFAULT_TEMPLATES = "short"


def template_names() -> list[str]:
    """The built-in template set names (``openai``: the 80 ImageNet templates, ``short``, ``photo``)."""
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.txt"))


def _parse(text: str, source: str) -> list[str]:
    templates = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not templates:
        raise UserInputError(f"{source} holds no templates; write one template per line, e.g. 'a photo of a {{}}.'")
    for template in templates:
        if template.count("{}") != 1:
            raise UserInputError(
                f"template {template!r} in {source} must contain exactly one '{{}}' where the label goes"
            )
    return templates


def load_templates(name_or_file: str | None = None) -> list[str]:
    """Templates of a built-in set name or a file path (default: ``short``)."""
    name = name_or_file or DEFAULT_TEMPLATES
    builtin = TEMPLATES_DIR / f"{name}.txt"
    if "/" not in name and builtin.is_file():
        return _parse(builtin.read_text(encoding="utf-8"), f"built-in template set {name!r}")
    path = Path(name).expanduser()
    if path.is_file():
        try:
            return _parse(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise UserInputError(f"cannot read templates file {path} ({exc})") from exc
    raise UserInputError(
        f"templates {name!r} is neither a built-in set ({', '.join(template_names())}) nor a file; "
        "pass a set name or a text file with one template per line"
    )


def fill(templates: list[str], label: str) -> list[str]:
    """Every template with ``label`` put in (``str.replace``: labels may hold braces)."""
    return [template.replace("{}", label) for template in templates]
