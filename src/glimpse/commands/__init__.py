"""CLI commands of the feature areas; each module exposes ``register(app: typer.Typer) -> None``.

The shared helpers (options, error handling, JSON output, progress) live in ``glimpse.cli`` and are
imported from there, never copied.
"""
