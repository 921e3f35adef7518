"""The labelling server: a JSON HTTP API beside the Gradio page, in one FastAPI app run by uvicorn.

The API (every call but ``/api/health`` and renders needs the header ``X-Label-Token`` when the server
has an access token):

- ``GET /api/health``: ``{"ok": true, "pairs": N}``.
- ``GET /api/next?labeller=NAME``: ``{"pair": {pair_id, prompt, left_motion, render, ...} | null,
  "progress": {...}}``: the pair NAME is to label; asking again gives the same pair in the same order.
- ``POST /api/label`` with ``{"labeller", "pair_id", "side": "left"|"right"|"skip", "degree":
  "much_better"|"better"|"slightly_better"|"unsure"|null, "left_motion": "a"|"b"}`` (the order the
  labeller was shown): stores the label in one transaction and answers with ``stored`` and the next pair.
  The same label sent again is not stored twice (``"stored": false``).
- ``POST /api/undo`` with ``{"labeller"}``: takes back the labeller's last label; the next pair is it.
- ``GET /api/progress?labeller=NAME``.
- ``GET /api/render/{pair_id}/{a|b}.gif?sig=...``: the pair's looping render (URLs come in the answers).

Errors are ``{"error": message}`` with 400 (bad input), 401 (token), 404 (no such pair) or 409 (a label
that conflicts with the one stored, or an old page).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from motion_align.labelling.service import AccessDenied, LabellingService
from motion_align.labelling.store import LabelError

LOG = logging.getLogger(__name__)


class LabelRequest(BaseModel):
    labeller: str
    pair_id: str
    side: str
    degree: str | None = None
    left_motion: str


class UndoRequest(BaseModel):
    labeller: str


def api_app(service: LabellingService) -> FastAPI:
    """The FastAPI app with the ``/api`` routes of the module docstring."""
    app = FastAPI(title="motion-align labelling", docs_url=None, redoc_url=None)

    @app.exception_handler(AccessDenied)
    async def denied(request: Request, error: AccessDenied) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=401)

    @app.exception_handler(LabelError)
    async def refused(request: Request, error: LabelError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=409 if error.conflict else 400)

    @app.exception_handler(KeyError)
    async def missing(request: Request, error: KeyError) -> JSONResponse:
        return JSONResponse({"error": str(error.args[0] if error.args else error)}, status_code=404)

    # Plain `def` routes: FastAPI runs them in its thread pool, each thread with its own SQLite connection.
    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "pairs": service.store.count_pairs()}

    @app.get("/api/next")
    def next_pair(labeller: str, x_label_token: str | None = Header(None)) -> dict[str, Any]:
        return service.next(labeller, x_label_token)

    @app.post("/api/label")
    def label(body: LabelRequest, x_label_token: str | None = Header(None)) -> dict[str, Any]:
        return service.label(
            body.labeller, x_label_token, body.pair_id, body.side, body.degree, body.left_motion
        )

    @app.post("/api/undo")
    def undo(body: UndoRequest, x_label_token: str | None = Header(None)) -> dict[str, Any]:
        return service.undo(body.labeller, x_label_token)

    @app.get("/api/progress")
    def progress(labeller: str, x_label_token: str | None = Header(None)) -> dict[str, Any]:
        return service.progress(labeller, x_label_token)

    @app.get("/api/render/{pair_id}/{left}.gif")
    def render(pair_id: str, left: str, sig: str = "") -> Any:
        if left not in ("a", "b"):
            raise LabelError(f"the left motion is 'a' or 'b', got {left!r}")
        service.check_signature(pair_id, left, sig)
        service.store.pair(pair_id)  # KeyError (404) for an unknown pair
        try:
            path = service.renderer.get(pair_id, left)
        except RuntimeError as error:
            return JSONResponse({"error": str(error)}, status_code=500)
        return FileResponse(path, media_type="image/gif", headers={"Cache-Control": "private, max-age=86400"})

    return app


def labelling_app(service: LabellingService) -> FastAPI:
    """The API app with the Gradio page mounted at ``/``."""
    import gradio as gr

    from motion_align.labelling.page import KEYBOARD_SCRIPT, PAGE_CSS, labelling_page

    app = api_app(service)
    return gr.mount_gradio_app(
        app,
        labelling_page(service),
        path="/",
        head=KEYBOARD_SCRIPT,
        css=PAGE_CSS,
        ssr_mode=False,
        footer_links=[],
    )


def serve(app: FastAPI, host: str, port: int) -> None:
    """Run ``app`` with uvicorn until interrupted."""
    import uvicorn

    LOG.info("labelling at http://%s:%d/", host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def render_folder(store_path: Path) -> Path:
    """Where a store's renders are cached: ``<store>.renders/`` beside it."""
    return store_path.with_name(store_path.name + ".renders")
