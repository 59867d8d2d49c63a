"""``glimpse serve``: the search page and HTTP API over a library (needs the ``server`` extra).

The server opens its library from the global options, as every other command does: ``--library``,
``--model``, ``--store`` and ``--device`` mean the same on both edges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glimpse.commands.common import err, handles_errors, options_of
from glimpse.display import printable
from glimpse.errors import FeatureUnavailableError


@handles_errors
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Anything but loopback needs --token.")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port to listen on.")] = 8000,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="GLIMPSE_TOKEN",
        help="Secret clients must send (Authorization: Bearer, or the page's login). Required off loopback, "
             "with at least 16 characters there.")] = None,
    root: Annotated[list[Path] | None, typer.Option(
        "--root", help="A folder the page may (re-)index, besides the library's roots (repeatable).")] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.1, help="Largest accepted upload.")] = 20.0,
    max_megapixels: Annotated[float, typer.Option(
        "--max-megapixels", min=0.1, help="Refuse uploaded or served images larger than this.")] = 100.0,
    cors_origin: Annotated[list[str] | None, typer.Option(
        "--cors-origin", help="Allow this origin to call the API from its pages (repeatable; none by default).")
                           ] = None,
    watch: Annotated[bool, typer.Option(
        "--watch", help="Keep the library current with its roots (and --root folders) while serving, "
                        "as `glimpse watch` does.")] = False,
) -> None:
    """Serve the search page and HTTP API (http://127.0.0.1:8000 by default)."""
    from glimpse.server.security import check_bind

    check_bind(host, token)  # before loading anything: a refused start should be instant
    try:
        import uvicorn

        from glimpse.server.app import create_app
    except ImportError as exc:
        raise FeatureUnavailableError(
            f"the server needs the server extra ({exc.name} is missing): pip install 'glimpse[server]'"
        ) from exc
    settings = options_of(ctx)
    app = create_app(settings, token, roots=[str(r) for r in root or []],
                     max_upload_bytes=int(max_upload_mb * 1_000_000), max_megapixels=max_megapixels,
                     cors_origins=cors_origin or [], watch=watch)
    host_shown = f"[{host}]" if ":" in host else host
    store = f" (vector store {printable(settings.store)})" if settings.store not in (None, "", "faiss") else ""
    err.print(f"glimpse serving {printable(str(settings.library_dir))}{store} on http://{printable(host_shown)}:"
              f"{port}" + (" (token required)" if token else "") + (", watching its folders" if watch else ""),
              markup=False)
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False)


def register(app: typer.Typer) -> None:
    """Attach ``serve`` to the CLI."""
    app.command("serve")(serve)
