"""The Starlette app behind ``styler ui``: the page's files and a small JSON and image API.

Every failure a user can cause answers ``{"error": "one line"}`` with a 4xx status, which the page
shows as one line; the server keeps running. Uploads are read into memory with a byte limit and
decoded under the pixel limit before anything else happens.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, AsyncIterator, Mapping
from urllib.parse import unquote

import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from styler._version import __version__
from styler.config import ApplyConfig, DeviceChoice, Features, TrainConfig, UiConfig
from styler.device import resolve_device
from styler.errors import StylerError
from styler.io.images import open_image, resize_longer
from styler.ui.guard import Guard
from styler.ui.jobs import Job, JobQueue
from styler.ui.render import Renderer, encode
from styler.ui.styles import Paintings, delete_style, rename_style, row
from styler.ui.training import TrainSetup
from styler.ui.uploads import Upload, UploadStore, safe_name, safe_stem

STATIC = Path(__file__).resolve().parent / "static"
THUMBNAIL = 160  # longer side of a painting in the Styles part


class HttpError(Exception):
    """A request the server refuses with ``status``, shown on the page as one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _refused(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=getattr(exc, "status", 400))


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it is known to pass ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    too_large = HttpError(413, f"upload is larger than the limit of {limit / 2**20:.0f} MB")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _settings(query: Mapping[str, str], max_size: int | None = None) -> ApplyConfig:
    """The sliders' ApplyConfig (ApplyConfig checks the ranges)."""
    try:
        strength, stroke = float(query.get("strength", 1.0)), float(query.get("stroke_scale", 1.0))
    except ValueError as exc:
        raise HttpError(400, f"strength and stroke scale must be numbers ({exc})") from exc
    return ApplyConfig(max_size=max_size, strength=strength, stroke_scale=stroke,
                       preserve_color=query.get("preserve_color", "0") in ("1", "true", "on"))


def _picture(image: Any, lossless: bool = False, download: str | None = None) -> Response:
    data, media = encode(image, lossless)
    headers = {"Content-Disposition": f'attachment; filename="{download}"'} if download else {}
    return Response(data, media_type=media, headers=headers)


class UiApp:
    """The page's state: uploads in memory, the styles' renderer, the training queue."""

    def __init__(self, weights_dir: Path, device: torch.device, config: UiConfig, runs_root: Path | None,
                 train_overrides: Mapping[str, Any] | None) -> None:
        self.config, self.weights_dir = config, Path(weights_dir)
        self.uploads = UploadStore(config.memory_bytes, config.view_size)
        self.renderer = Renderer(self.weights_dir, device, config.grid_size)
        self.setup = TrainSetup(self.weights_dir, device, self.uploads, config, runs_root, train_overrides)
        self.queue = JobQueue(self.setup.build)
        self.paintings = Paintings(runs_root)

    # --- helpers ---------------------------------------------------------------------------------

    def _upload(self, upload_id: str) -> Upload:
        upload = self.uploads.get(upload_id)
        if upload is None:
            raise HttpError(404, "that photo is no longer on the server; add it again")
        return upload

    def _job(self, job_id: str) -> Job:
        job = self.queue.get(job_id)
        if job is None:
            raise HttpError(404, "no such training job")
        return job

    async def _add(self, request: Request) -> Upload:
        data = await _body(request, self.config.max_upload_bytes)
        # The page sends the file's name percent-encoded: a label, never a path (see uploads.label_of).
        name = unquote(request.headers.get("x-filename", ""))
        return await run_in_threadpool(self.uploads.add, data, name)

    # --- pages and information ------------------------------------------------------------------

    async def static(self, request: Request) -> Response:
        name = request.path_params.get("name", "index.html")
        if name not in ("index.html", "app.js", "app.css"):
            raise HttpError(404, "not found")
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    async def info(self, _request: Request) -> JSONResponse:
        config = self.config
        return JSONResponse({"version": __version__, "steps": TrainConfig.steps, "max_steps": config.max_steps,
                             "budgets": config.budgets, "default_budget": config.default_budget,
                             "features": [f.value for f in Features], "default_features": TrainConfig.features.value,
                             "max_upload_bytes": config.max_upload_bytes, "view_size": config.view_size})

    # --- Try ---------------------------------------------------------------------------------------

    async def add_photo(self, request: Request) -> JSONResponse:
        """Keep a photo and answer it in every style, at the grid's size."""
        upload = await self._add(request)
        cells, failures = await run_in_threadpool(self.renderer.grid, upload)
        return JSONResponse({"id": upload.id, "label": upload.label, "size": upload.size, "cells": cells,
                             "failures": failures})

    async def add_upload(self, request: Request) -> JSONResponse:
        """Keep an image for a training form (the painting or a photo)."""
        upload = await self._add(request)
        return JSONResponse({"id": upload.id, "label": upload.label, "size": upload.size})

    async def original(self, request: Request) -> Response:
        return _picture(self._upload(request.path_params["id"]).preview)

    async def render(self, request: Request) -> Response:
        upload = self._upload(request.path_params["id"])
        style = self.renderer.find(request.query_params.get("style", ""))
        if style is None:
            raise HttpError(404, f"no style named {request.query_params.get('style', '')[:80]!r}")
        full = request.query_params.get("full") == "1"
        image = await run_in_threadpool(self.renderer.render, upload, style,
                                        _settings(request.query_params, None if full else self.config.view_size), full)
        name = f"{safe_stem(upload.label)}_{safe_name(style.name)}.png" if full else None
        return _picture(image, lossless=full, download=name)

    async def archive(self, request: Request) -> Response:
        uploads = [self._upload(i) for i in request.query_params.getlist("photo")]
        if not uploads:
            raise HttpError(400, "no photos to put in the zip")
        data = await run_in_threadpool(self.renderer.archive, uploads, _settings(request.query_params))
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="styler-results.zip"'})

    # --- Styles ------------------------------------------------------------------------------------

    async def styles(self, _request: Request) -> JSONResponse:
        from styler.io.weights import list_styles

        found = await run_in_threadpool(list_styles, self.weights_dir)
        return JSONResponse({"weights_dir": str(self.weights_dir.absolute()), "styles": [row(s) for s in found]})

    async def painting(self, request: Request) -> Response:
        name = request.path_params["name"]
        style = next((s for s in self.renderer.usable() if s.name == name), None)
        path = await run_in_threadpool(self.paintings.find, style) if style is not None else None
        if path is None:
            raise HttpError(404, "no painting on file for this style")
        image = await run_in_threadpool(open_image, path, THUMBNAIL)
        return _picture(resize_longer(image.convert("RGB"), THUMBNAIL))

    async def change_style(self, request: Request) -> JSONResponse:
        name, action = request.path_params["name"], request.path_params["action"]
        if action not in ("delete", "rename"):
            raise HttpError(404, "not found")
        if action == "delete":
            await run_in_threadpool(delete_style, name, self.weights_dir)
        else:
            form = await self._json(request)
            await run_in_threadpool(rename_style, name, form.get("to"), self.weights_dir)
        return await self.styles(request)

    # --- Train -------------------------------------------------------------------------------------

    @staticmethod
    async def _json(request: Request) -> dict[str, Any]:
        try:
            form = json.loads(await _body(request, 1 << 20))
        except ValueError as exc:
            raise HttpError(400, f"the form is not JSON ({exc})") from exc
        if not isinstance(form, dict):
            raise HttpError(400, "the form must be a JSON object")
        return form

    async def train(self, request: Request) -> JSONResponse:
        form = await self._json(request)
        spec = await run_in_threadpool(self.setup.accept, form, self.queue.busy_names())
        job = self.queue.submit(spec)
        return JSONResponse(next(view for view in self.queue.views() if view["id"] == job.id))

    async def jobs(self, _request: Request) -> JSONResponse:
        return JSONResponse({"jobs": self.queue.views()})

    async def stop(self, request: Request) -> JSONResponse:
        self.queue.stop(self._job(request.path_params["id"]))
        return await self.jobs(request)

    async def preview(self, request: Request) -> Response:
        path = self._job(request.path_params["id"]).latest_preview()
        if path is None:
            raise HttpError(404, "no preview yet")
        return FileResponse(path, media_type="image/png")

    def routes(self) -> list[Route]:
        return [
            Route("/", self.static), Route("/static/{name}", self.static),
            Route("/api/info", self.info),
            Route("/api/photos", self.add_photo, methods=["POST"]),
            Route("/api/uploads", self.add_upload, methods=["POST"]),
            Route("/api/photos/{id}/original", self.original),
            Route("/api/photos/{id}/render", self.render),
            Route("/api/zip", self.archive),
            Route("/api/styles", self.styles),
            Route("/api/styles/{name}/painting", self.painting),
            Route("/api/styles/{name}/{action:str}", self.change_style, methods=["POST"]),
            Route("/api/train", self.train, methods=["POST"]),
            Route("/api/jobs", self.jobs),
            Route("/api/jobs/{id}/stop", self.stop, methods=["POST"]),
            Route("/api/jobs/{id}/preview", self.preview),
        ]


def create_app(weights_dir: Path | str, device: DeviceChoice | str = DeviceChoice.AUTO, config: UiConfig | None = None,
               runs_root: Path | None = None, train_overrides: Mapping[str, Any] | None = None) -> Starlette:
    """The app; its training worker starts with the server and stops (saving what it trained) with it.
    ``runs_root``: where run folders go (default: ``styler train``'s); ``train_overrides``: TrainConfig
    fields every job gets (tests use tiny networks)."""
    state = UiApp(Path(weights_dir), resolve_device(device), config or UiConfig(), runs_root, train_overrides)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state.queue.start()
        try:
            yield
        finally:
            await run_in_threadpool(state.queue.close)

    app = Starlette(routes=state.routes(), lifespan=lifespan, middleware=[Middleware(Guard, host=state.config.host)],
                    exception_handlers={StylerError: _refused, HttpError: _refused})
    app.state.ui = state
    return app
