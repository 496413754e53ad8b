"""The review web page: server-rendered HTML over the archives, one form per action, a few keys in JavaScript.

Every state change is a POST carrying the page's form key (a random value only a page this server rendered
knows), so another web site open in the operator's browser cannot label through it. With a token, every
request must carry it: ``?token=`` once (then an HttpOnly, SameSite=Strict cookie), or an
``Authorization: Bearer`` header. Tokens are compared in constant time. Without a token (loopback only),
a request must name the loopback host, so a web page whose DNS name is rebound to 127.0.0.1 gets nothing.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlencode

import cv2
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.datastructures import URL
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from inspector.bundle import Bundle
from inspector.imageio import ImageError, load_image
from inspector.preprocess import Roi
from inspector.protocol.enums import Verdict
from review.config import ReviewConfig
from review.frames import ArchivedFrame, FrameFilter, Show, scan_archives
from review.store import LabelError, LabelRecord, LabelStore

log = logging.getLogger(__name__)

TOKEN_COOKIE = "inspector_review_token"
# Keys for the label buttons, in class order (the good class first); s skip, p back and u undo are taken.
LABEL_KEYS = "1234567890qwertyio"
QUEUE_SHOWN = 60


def token_matches(expected: str, given: Optional[str]) -> bool:
    """Constant-time comparison (no early exit on the first wrong character)."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def _given_token(request: Request) -> Tuple[Optional[str], bool]:
    """The token a request carries and whether it came in the URL (then it is moved into a cookie)."""
    query = request.query_params.get("token")
    if query is not None:
        return query, True
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip(), False
    return request.cookies.get(TOKEN_COOKIE), False


class TokenMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: Any, token: str):
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        given, in_url = _given_token(request)
        if not token_matches(self.token, given):
            return PlainTextResponse(
                "401: this review page needs its token: open it as /?token=TOKEN "
                "(the token given to `inspector review` with --token or INSPECTOR_REVIEW_TOKEN)",
                status_code=401,
            )
        if in_url:  # keep it out of the address bar, history and screenshots
            clean = URL(str(request.url)).remove_query_params("token")
            response: Response = RedirectResponse(str(clean), status_code=303)
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
            return response
        return await call_next(request)


@dataclass
class ReviewState:
    """What one server process keeps between requests: the frames last scanned and this session's undo stack."""

    cfg: ReviewConfig
    store: LabelStore
    roi: Optional[Roi]
    form_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    frames: Dict[str, ArchivedFrame] = field(default_factory=dict)
    unusable: int = 0
    undo_stack: List[LabelRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def rescan(self) -> List[ArchivedFrame]:
        """Archives grow while a station runs: every page view reads them again."""
        frames, self.unusable = scan_archives(self.cfg.archives)
        self.frames = {f.key: f for f in frames}
        return frames


def _roi_of(cfg: ReviewConfig) -> Optional[Roi]:
    return Bundle.load(cfg.bundle).manifest.preprocess.roi if cfg.bundle is not None else None


def _env() -> Environment:
    return Environment(loader=PackageLoader("review", "templates"), autoescape=select_autoescape(["html", "j2"]))


def create_app(cfg: ReviewConfig) -> Starlette:
    """The Starlette application for ``cfg`` (the token middleware is on whenever a token is set)."""
    cfg.data.mkdir(exist_ok=True)
    state = ReviewState(cfg, LabelStore(cfg.data, cfg.good_class, cfg.run), _roi_of(cfg))
    template = _env().get_template("review.html.j2")

    def frame_or_404(key: str) -> ArchivedFrame:
        frame = state.frames.get(key)
        if frame is None:
            state.rescan()
            frame = state.frames.get(key)
        if frame is None:
            raise LookupError(key)
        return frame

    def go(filt: FrameFilter, frame: Optional[str] = None, note: str = "", error: str = "") -> RedirectResponse:
        params = filt.query()
        params.update({k: v for k, v in (("frame", frame), ("note", note), ("error", error)) if v})
        return RedirectResponse("/?" + urlencode(params), status_code=303)

    async def page(request: Request) -> Response:
        try:
            filt = FrameFilter.from_query(dict(request.query_params))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            return PlainTextResponse(f"400: bad filter: {problems}", status_code=400)
        frames = state.rescan()
        labels = state.store.labels()
        shown = [f for f in frames if filt.keeps(f, f.result.id in labels)]
        key = request.query_params.get("frame")
        index = next((i for i, f in enumerate(shown) if f.key == key), 0)
        current = shown[index] if shown else None
        classes = state.store.classes()
        html = template.render(
            cfg=cfg,
            query=filt.query(),
            frames=frames,
            shown=shown,
            queue=shown[max(0, index - 5) : max(0, index - 5) + QUEUE_SHOWN],
            current=current,
            prev_key=shown[index - 1].key if current is not None and index > 0 else None,
            next_key=shown[index + 1].key if current is not None and index + 1 < len(shown) else None,
            label=labels.get(current.result.id) if current is not None else None,
            labels=labels,
            keys=dict(zip(classes, LABEL_KEYS)),
            classes=classes,
            gains=state.store.gains(),
            roi=state.roi,
            stations=sorted({f.result.station for f in frames}),
            top_classes=sorted({f.result.top_class for f in frames}),
            verdicts=[v.value for v in Verdict],
            shows=list(Show),
            undo=state.undo_stack[-1] if state.undo_stack else None,
            unusable=state.unusable,
            form_key=state.form_key,
            note=request.query_params.get("note", ""),
            error=request.query_params.get("error", ""),
            urlencode=urlencode,
        )
        return HTMLResponse(html)

    async def posted(request: Request) -> Tuple[Dict[str, str], FrameFilter]:
        form = await request.form()
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        if not token_matches(state.form_key, values.get("form_key")):
            raise PermissionError("this form did not come from this review page (reload the page)")
        return values, FrameFilter.from_query(values)

    async def label(request: Request) -> Response:
        values, filt = await posted(request)
        try:
            frame = frame_or_404(values.get("frame", ""))
        except LookupError:
            return go(filt, error="that frame is no longer in the archive")
        with state.lock:
            try:
                record = state.store.label(frame, values.get("label", ""), cfg.user)
            except LabelError as exc:
                return go(filt, frame.key, error=str(exc))
            state.undo_stack.append(record)
        log.info("labeled %s as %s -> %s", frame.image, record.provenance.label, record.image)
        target = values.get("next") or frame.key
        return go(filt, target, note=f"{frame.image.name} -> {record.image.relative_to(cfg.data)}")

    async def undo(request: Request) -> Response:
        _, filt = await posted(request)
        with state.lock:
            if not state.undo_stack:
                return go(filt, error="nothing to undo in this session")
            record = state.undo_stack[-1]
            try:
                state.store.undo(record)
            except LabelError as exc:
                return go(filt, error=str(exc))
            state.undo_stack.pop()
        log.info("undid %s", record.image)
        source = next((f.key for f in state.rescan() if f.result.id == record.provenance.result_id), None)
        return go(filt, source, note=f"undone: {record.image.relative_to(cfg.data)} removed")

    async def add_class(request: Request) -> Response:
        values, filt = await posted(request)
        try:
            folder = state.store.add_class(values.get("name", ""))
        except (LabelError, OSError) as exc:
            return go(filt, values.get("frame"), error=str(exc))
        return go(filt, values.get("frame"), note=f"class '{folder.name}' added ({folder})")

    def frame_file(kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            try:
                frame = frame_or_404(request.path_params["key"])
            except LookupError:
                return PlainTextResponse("404: no such frame", status_code=404)
            if kind == "image":
                return FileResponse(frame.image)
            if kind == "overlay":
                if frame.overlay is None or not frame.overlay.is_file():
                    return PlainTextResponse("404: this frame has no heatmap overlay", status_code=404)
                return FileResponse(frame.overlay)
            return crop(frame)

        return serve

    def crop(frame: ArchivedFrame) -> Response:
        try:
            rgb = load_image(frame.image)
        except ImageError as exc:
            return PlainTextResponse(f"404: {exc}", status_code=404)
        roi = state.roi
        if roi is not None and roi.x + roi.width <= rgb.shape[1] and roi.y + roi.height <= rgb.shape[0]:
            rgb = rgb[roi.y : roi.y + roi.height, roi.x : roi.x + roi.width]
        ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return Response(png.tobytes(), media_type="image/png")

    async def forbidden(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"403: {exc}", status_code=403)

    if cfg.token is not None:
        middleware = [Middleware(TokenMiddleware, token=cfg.token.get_secret_value())]
    else:  # loopback without a token: refuse other Host names, so a DNS-rebinding web page cannot reach it
        middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=sorted({"127.0.0.1", "localhost", cfg.host}))]
    app = Starlette(
        routes=[
            Route("/", page),
            Route("/label", label, methods=["POST"]),
            Route("/undo", undo, methods=["POST"]),
            Route("/classes", add_class, methods=["POST"]),
            Route("/image/{key}", frame_file("image")),
            Route("/crop/{key}", frame_file("crop")),
            Route("/overlay/{key}", frame_file("overlay")),
        ],
        middleware=middleware,
        exception_handlers={PermissionError: forbidden},
    )
    app.state.review = state
    return app
