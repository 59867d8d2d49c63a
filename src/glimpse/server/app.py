"""The FastAPI app: routes parse the request, call :class:`LibraryService`, and format JSON.

Errors are JSON ``{"error": message}`` with a status code chosen from the GlimpseError type
(see ``_STATUS``). Interactive API docs: ``/docs``; the schema: ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from glimpse.errors import (
    FeatureUnavailableError,
    GlimpseError,
    ImageError,
    ImageTooLargeError,
    LibraryBusyError,
    ModelError,
    UserInputError,
)
from glimpse.images import DEFAULT_MAX_MEGAPIXELS
from glimpse.items import DEFAULT_PER_VIDEO
from glimpse.library import EmptyLibraryError
from glimpse.server.jobs import JobConflictError
from glimpse.server.security import (
    TOKEN_COOKIE,
    AuthThrottle,
    SecurityMiddleware,
    client_address,
    throttled_message,
)
from glimpse.server.service import MAX_CLASSIFY_LABELS, MAX_K, MAX_TEXT_CHARS, LibraryService, NotFoundError
from glimpse.server.thumbs import DEFAULT_THUMB_SIZE
from glimpse.settings import LibrarySettings

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD_BYTES = 20_000_000

# Most specific first: the first class an error is an instance of decides its status.
_STATUS: tuple[tuple[type[GlimpseError], int], ...] = (
    (NotFoundError, 404),
    (JobConflictError, 409),
    (LibraryBusyError, 409),
    (EmptyLibraryError, 409),
    (ImageTooLargeError, 413),
    (ImageError, 415),
    (FeatureUnavailableError, 501),
    (UserInputError, 400),
    (ModelError, 503),
)


def status_for(exc: GlimpseError) -> int:
    return next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)


# -- documented shapes ---------------------------------------------------------------------------------
class ErrorOut(BaseModel):
    error: str = Field(description="What went wrong and what to do about it.")


class ImageOut(BaseModel):
    id: int
    path: str
    name: str
    folder: str
    width: int | None
    height: int | None
    format: str | None
    size: int
    thumbnail: str
    file: str
    tags: list[dict[str, Any]] = Field(description="Its tags, best first: tag (the filter key), label, score.")
    meta: dict[str, Any] | None = Field(None, description="Capture metadata: taken_local (ISO local time), "
                                        "utc_offset (minutes), taken_source (exif | mtime), latitude, longitude, "
                                        "make, model, camera, lens, orientation, duration (s, videos) — the "
                                        "fields the file has.")
    kind: str = Field("photo", description="photo or video (a video is searched by its sampled frames).")
    frames: list[dict[str, Any]] | None = Field(None, description="A video's frames: id (the frame's item id, for "
                                                "/api/similar), time (s), score (in a search), thumbnail.")


class HitOut(ImageOut):
    score: float = Field(description="Cosine similarity, higher is better (0 in the recent-images list; the text "
                                     "score in a text-only search).")
    match: str | None = Field(None, description="Why it was found: clip (image similarity), ocr (its text "
                                                "matched), both.")
    snippet: str | None = Field(None, description="The best-matching line of its text, as recognised.")
    rank_score: float | None = Field(None, description="The fusion score ordering a fused search.")
    time: float | None = Field(None, description="A video hit: the time (s) of its best frame; play from there.")


class TextOut(BaseModel):
    id: int
    lines: list[dict[str, Any]] | None = Field(description="Recognised lines in reading order: text, confidence, "
                                               "box (4 [x, y] points in image pixels); null when the image's text "
                                               "was never read (`glimpse index --ocr`).")


class SearchOut(BaseModel):
    results: list[HitOut]
    offset: int
    k: int
    more: bool = Field(description="True when another page exists at offset + k.")


class JobOut(BaseModel):
    id: str
    state: str = Field(description="queued, running, done or failed")
    roots: list[str]
    total: int | None
    done: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    report: dict[str, Any] | None
    error: str | None
    version: int
    activity: str | None = Field(None, description="What a long step is doing now, e.g. sampling a long video.")


class IndexIn(BaseModel):
    roots: list[str] | None = Field(None, description="Roots to re-index (default: all the server knows).")


class ClassifyIn(BaseModel):
    ids: list[int] = Field(description="Indexed image ids (their stored vectors are used).", max_length=MAX_K)
    # The limits are checked by the service (a 400 that names them), documented here for the schema.
    labels: list[str] = Field(
        min_length=1, json_schema_extra={"maxItems": MAX_CLASSIFY_LABELS},
        description=f"Class names, at most {MAX_CLASSIFY_LABELS} per request and {MAX_TEXT_CHARS} characters each.")
    k: int = Field(5, ge=1, le=100)


class LoginIn(BaseModel):
    token: str


# Query parameters shared by the search routes (module level: FastAPI resolves them by name).
Lang = Annotated[str, Query(pattern="^(en|zh)$", description="Language of tag names.")]
K = Annotated[int, Query(ge=1, le=MAX_K, description="Results per page.")]
Offset = Annotated[int, Query(ge=0, le=10_000, description="Skip this many results (paging).")]
MinScore = Annotated[float | None, Query(ge=-1, le=1, description="Drop results scoring below this.")]
Tag = Annotated[list[str] | None, Query(description="Keep images carrying every tag (repeatable).")]
Folder = Annotated[str | None, Query(description="Keep images inside this folder.")]
After = Annotated[str | None, Query(description="Taken at or after the start of this date (YYYY[-MM[-DD]]).")]
Before = Annotated[str | None, Query(description="Taken before the start of this date (YYYY[-MM[-DD]]).")]
Camera = Annotated[str | None, Query(description="Camera make or model contains this (case-insensitive).")]
Near = Annotated[str | None, Query(description="LAT,LON[,RADIUS]: taken within RADIUS (km or m) of a place.")]
Sort = Annotated[str, Query(pattern="^(score|date)$", description="score (best first) or date (newest first).")]
Kind = Annotated[str | None, Query(alias="type", pattern="^(photo|video)$", description="Only photos or only videos.")]
PerVideo = Annotated[int, Query(ge=1, le=50, description="Frames listed per video hit (its best, best first).")]


def _where(after: str | None, before: str | None, camera: str | None, near: str | None) -> Any:
    from glimpse.metafilter import MetadataFilter

    where = MetadataFilter.parse(after=after, before=before, camera=camera, near=near)
    return where if where.active else None

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 429)}


def _file_id(raw: str) -> int:
    """Image ids are positive integers; anything else (``..``, paths, encodings) is simply not found."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFoundError(f"no image with id {raw[:40]!r} is available")
    return int(raw)


def create_app(settings: LibrarySettings, token: str | None = None, *, roots: Sequence[str] = (),
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
               thumb_size: int = DEFAULT_THUMB_SIZE, cors_origins: Sequence[str] = (), index_batch_size: int = 32,
               auth_throttle: AuthThrottle | None = None, watch: bool = False) -> FastAPI:
    """The glimpse web app over the library ``settings`` name (library folder, model, vector store, device:
    the CLI's global options, so each means the same on both edges).

    ``token`` None: no authentication, and only loopback host names are answered (bind to loopback;
    ``glimpse serve`` enforces it). ``roots``: extra folders ``POST /api/index`` may index.
    ``cors_origins``: origins allowed to call the API from other pages (none by default).
    ``auth_throttle``: how wrong tokens are throttled (default :class:`AuthThrottle`'s limits).
    ``watch``: keep the library current with the roots while serving (``glimpse.watch``).
    """
    throttle = auth_throttle if auth_throttle is not None else AuthThrottle()
    service = LibraryService(settings, roots=list(roots), max_megapixels=max_megapixels, thumb_size=thumb_size,
                             index_batch_size=index_batch_size)
    service.warm_up()
    if watch:
        service.start_watching()
    # docs_url=None: FastAPI's default /docs page loads Swagger UI from a CDN, which an offline machine
    # cannot reach; _add_api_docs serves it from the swagger-ui-bundle package instead.
    app = FastAPI(title="glimpse", version="1", summary="Search your images by text or by image.",
                  responses=ERRORS, docs_url=None, redoc_url=None)
    app.state.service = service
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_credentials=True,
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "X-Glimpse-Token"])
    app.add_middleware(SecurityMiddleware, token=token, max_body_bytes=max_upload_bytes,
                       allowed_origins=cors_origins, throttle=throttle)
    _add_error_handlers(app)
    _add_routes(app, service, token, throttle)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_api_docs(app)
    app.router.add_event_handler("shutdown", service.close)
    return app


def _add_api_docs(app: FastAPI) -> None:
    """Interactive API docs at ``/docs`` from local files (the swagger-ui-bundle package), when installed."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return  # /openapi.json still documents every route
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse

    app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="glimpse API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css", swagger_favicon_url="")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GlimpseError)
    async def glimpse_error(_: Request, exc: GlimpseError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=status_for(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if exc.status_code != 404 else "not found"
        return JSONResponse({"error": str(message)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]
        return JSONResponse({"error": "invalid request: " + "; ".join(parts)}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server log"},
                            status_code=500)


def _add_routes(app: FastAPI, service: LibraryService, token: str | None, throttle: AuthThrottle) -> None:
    def page_out(vector: Any, k: int, offset: int, min_score: float | None, folder: str | None,
                 tag: list[str] | None, lang: str, where: Any = None, kind: str | None = None,
                 per_video: int = DEFAULT_PER_VIDEO) -> dict[str, Any]:
        page = service.search(vector, k=k, offset=offset, min_score=min_score, folder=folder, tags=tag, where=where,
                              kind=kind, per_video=per_video)
        return {"results": service.hit_dicts(page, lang), "offset": offset, "k": k, "more": page.more}

    @app.get("/", include_in_schema=False)
    def index_page() -> FileResponse:
        # The page reads its search from the URL (/?q=..., /?like=ID): one file answers them all.
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        # An SVG under the name browsers and tools ask for by default (the page links it as well).
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml",
                            headers={"cache-control": "public, max-age=86400"})

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, bool]:
        """Liveness: the process answers (no authentication needed)."""
        return {"ok": True}

    @app.post("/api/login", tags=["meta"], status_code=204)
    def login(body: LoginIn, request: Request) -> Response:
        """Check a token and keep it in an HttpOnly, SameSite=Strict cookie for the page (429 after too many
        wrong tokens from one address)."""
        if token is None:
            return Response(status_code=204)
        result = throttle.check(client_address(request.scope), body.token, token)
        if result.retry_after is not None:
            return JSONResponse({"error": throttled_message(result.retry_after)}, status_code=429,
                                headers={"retry-after": str(result.retry_after)})
        if not result.ok:
            return JSONResponse({"error": "wrong token; use the one the server was started with"}, status_code=401)
        response = Response(status_code=204)
        response.set_cookie(TOKEN_COOKIE, body.token, httponly=True, samesite="strict", path="/")
        return response

    @app.get("/api/status", tags=["library"])
    def status() -> dict[str, Any]:
        """Counts, model, index, roots, recent errors, the latest job, and which optional features exist."""
        data = service.library.status().to_dict()
        data["roots"] = service.roots()
        latest = service.jobs.latest()
        data["job"] = latest.to_dict() if latest is not None else None
        data["features"] = {"tags": True, "classify": True}  # kept for clients that read them
        data["watch"] = service.watch_status()
        return data

    @app.get("/api/search", tags=["search"], response_model=SearchOut, response_model_exclude_none=True)
    def search(q: Annotated[str, Query(min_length=1, max_length=MAX_TEXT_CHARS, description="Text query; "
                                       "+a -b and w:term arithmetic as on the command line; text:word or "
                                       "text:\"a phrase\" match the text in the images.")],
               k: K = 20, offset: Offset = 0, min_score: MinScore = None, tag: Tag = None, folder: Folder = None,
               lang: Lang = "en", after: After = None, before: Before = None, camera: Camera = None,
               near: Near = None, sort: Sort = "score", kind: Kind = None,
               per_video: PerVideo = DEFAULT_PER_VIDEO) -> dict[str, Any]:
        """Images best matching a text query, best first (or newest first with sort=date): CLIP similarity,
        fused with the images' text where it matches; text: terms alone are a full-text search. A video is one
        hit at its best frame (``time``), listing its best ``frames``."""
        page = service.search_query(q, k=k, offset=offset, min_score=min_score, folder=folder, tags=tag,
                                    where=_where(after, before, camera, near), sort=sort, kind=kind,
                                    per_video=per_video)
        return {"results": service.hit_dicts(page, lang), "offset": offset, "k": k, "more": page.more}

    @app.post("/api/search/image", tags=["search"], response_model=SearchOut, response_model_exclude_none=True)
    def search_image(file: Annotated[UploadFile, File(description="An image file.")], k: K = 20, offset: Offset = 0,
                     min_score: MinScore = None, tag: Tag = None, folder: Folder = None,
                     lang: Lang = "en", kind: Kind = None, per_video: PerVideo = DEFAULT_PER_VIDEO) -> dict[str, Any]:
        """Images most like an uploaded image (size and megapixels limited)."""
        vector = service.upload_vector(file.file.read())
        return page_out(vector, k, offset, min_score, folder, tag, lang, kind=kind, per_video=per_video)

    @app.get("/api/similar/{image_id}", tags=["search"], response_model=SearchOut, response_model_exclude_none=True)
    def similar(image_id: str, k: K = 20, offset: Offset = 0, min_score: MinScore = None, tag: Tag = None,
                folder: Folder = None, lang: Lang = "en", after: After = None, before: Before = None,
                camera: Camera = None, near: Near = None, kind: Kind = None,
                per_video: PerVideo = DEFAULT_PER_VIDEO) -> dict[str, Any]:
        """Images most like an indexed one, or a video frame by its id ("more like this"); it comes first."""
        vector = service.stored_vector(_file_id(image_id))
        return page_out(vector, k, offset, min_score, folder, tag, lang, _where(after, before, camera, near),
                        kind=kind, per_video=per_video)

    @app.get("/api/recent", tags=["search"], response_model=SearchOut, response_model_exclude_none=True)
    def recent(k: K = 20, offset: Offset = 0, lang: Lang = "en") -> dict[str, Any]:
        """The most recently indexed images, newest first (the page's view before any search; score 0)."""
        page = service.recent(k=k, offset=offset)
        return {"results": service.hit_dicts(page, lang), "offset": offset, "k": k, "more": page.more}

    @app.get("/api/images/{image_id}", tags=["images"], response_model=ImageOut, response_model_exclude_none=True)
    def image_info(image_id: str, lang: Lang = "en") -> dict[str, Any]:
        """Metadata of an indexed image."""
        rec, _ = service.record(_file_id(image_id))
        return service.describe(rec, lang)

    @app.get("/api/images/{image_id}/text", tags=["images"], response_model=TextOut)
    def image_text(image_id: str) -> dict[str, Any]:
        """The text read in an indexed image (OCR), line by line with boxes, for the detail view."""
        return service.text_of(_file_id(image_id))

    @app.get("/api/images/{image_id}/thumbnail", tags=["images"], response_class=FileResponse)
    def thumbnail(image_id: str, t: Annotated[float | None, Query(ge=0, le=1e7, description=(
            "A video's frame time in seconds (default: its start)."))] = None) -> FileResponse:
        """A cached JPEG thumbnail of an indexed image, or of a video's frame (by ``t``, or by the frame's id)."""
        rec, real, at = service.item(_file_id(image_id))
        path = service.thumbs.get(rec, real, t if t is not None else at)
        return FileResponse(path, media_type="image/jpeg",
                            headers={"cache-control": "private, max-age=86400"})

    @app.get("/api/images/{image_id}/file", tags=["images"], response_class=FileResponse)
    def image_file(image_id: str) -> FileResponse:
        """The original file of an indexed image (only files inside indexed roots)."""
        rec, real = service.record(_file_id(image_id))
        media = service.media_type(rec, real)
        return FileResponse(real, media_type=media, headers={"cache-control": "private, max-age=3600",
                                                             "content-security-policy": "sandbox"})

    @app.get("/api/folders", tags=["library"])
    def folders() -> list[dict[str, Any]]:
        """Folders holding indexed images, with image counts (for the folder filter)."""
        return service.folders()

    @app.get("/api/tags", tags=["library"])
    def tags(lang: Lang = "en", limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        """Most common tags with counts (``available`` is always true: kept for clients that read it)."""
        return {"available": True, "tags": service.tags.facets(lang, limit)}

    @app.post("/api/classify", tags=["search"], description="Zero-shot classification of indexed images against "
              f"labels (at most {MAX_CLASSIFY_LABELS} labels per request; their stored vectors are used).")
    def classify(body: ClassifyIn) -> dict[str, Any]:
        return {"results": service.classify(body.ids, body.labels, body.k)}

    @app.post("/api/index", tags=["indexing"], status_code=202, response_model=JobOut)
    def start_index(body: Annotated[IndexIn | None, Body()] = None) -> JSONResponse:
        """Start re-indexing roots in the background; 409 while another job runs."""
        job = service.start_index(body.roots if body else None)
        return JSONResponse(job.to_dict(), status_code=202, headers={"location": f"/api/jobs/{job.id}"})

    @app.get("/api/jobs/{job_id}", tags=["indexing"], response_model=JobOut)
    def job_status(job_id: str) -> dict[str, Any]:
        """Progress of an indexing job."""
        job = service.jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id[:40]!r}; jobs are kept in memory until the server restarts")
        return job.to_dict()

    @app.get("/api/jobs/{job_id}/events", tags=["indexing"], response_class=StreamingResponse)
    async def job_events(job_id: str) -> StreamingResponse:
        """Server-sent events: one ``progress`` event per change, the last one when the job ends."""
        job = service.jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id[:40]!r}")

        async def stream() -> AsyncIterator[str]:
            last = -1
            while True:
                snap = job.to_dict()
                if snap["version"] != last:
                    last = snap["version"]
                    yield f"event: progress\ndata: {json.dumps(snap)}\n\n"
                if snap["state"] in ("done", "failed"):
                    return
                await asyncio.sleep(0.2)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"})
