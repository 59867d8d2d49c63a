"""The CLI's commands, grouped by what users see; each module exposes ``register(app: typer.Typer) -> None``,
which only attaches its commands (decorated with ``handles_errors`` where they are defined).

    search      index, search, similar, status, remove, rebuild-index
    understand  classify, moderate, dupes, eval classify|retrieval|multilabel|tags
    tagging     tag, tags, tag-calibrate, tag-export
    models      models list, export, bench, train probe|clip, dataset split|stats
    scale       bench-scale, and the printing half of index --engine ray
    serve       serve
    watch       watch

The shared helpers (consoles, error handling, JSON output, progress, the global options, shared option
types) live in ``glimpse.commands.common``; no command module imports ``glimpse.cli``.
"""
