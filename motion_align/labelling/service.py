"""What the labelling server does for a labeller, whether they click in the page or call the HTTP API:
check the shared access token, hand out the next pair (and queue its renders and the next ones), store a
label, undo the last one, report progress. The page (:mod:`~motion_align.labelling.page`) and the JSON
API (:mod:`~motion_align.labelling.server`) both call :class:`LabellingService`, so the checks are the
same and live on the server.

The access token is optional: with one, every call must carry it (compared in constant time). Render URLs
carry a signature of the pair and order made with the token instead of the token itself, so that an
``<img>`` tag can load them and the token never appears in a URL or a log.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import asdict
from typing import Any

from motion_align.labelling.render_cache import PairRenderer
from motion_align.labelling.store import LabelStore, Shown

#: The degrees of the page's buttons and the API, strongest first, with their display labels
#: (InstructMotion's scale).
DEGREE_LABELS = {
    "much_better": "much better",
    "better": "better",
    "slightly_better": "slightly better",
    "unsure": "negligibly better / unsure",
}


class AccessDenied(PermissionError):
    """A call without the server's access token, or with another one."""


class LabellingService:
    """The server's labelling calls on ``store``; renders from ``renderer``; ``token`` the shared access
    token (None: none needed); ``prefetch`` how many pairs ahead of a labeller to render."""

    def __init__(
        self, store: LabelStore, renderer: PairRenderer, token: str | None = None, prefetch: int = 4
    ) -> None:
        if token is not None and not token:
            raise ValueError(
                "the access token is empty: set the environment variable or leave --token-env out"
            )
        self.store, self.renderer, self.token, self.prefetch = store, renderer, token, prefetch

    @property
    def needs_token(self) -> bool:
        return self.token is not None

    def check_token(self, given: str | None) -> None:
        if self.token is None:
            return
        if not given or not hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8")):
            raise AccessDenied("wrong or missing access token")

    def signature(self, pair_id: str, left: str) -> str:
        key = (self.token or self.store.salt or "").encode("utf-8")
        return hmac.new(key, f"{pair_id}-{left}".encode(), hashlib.sha256).hexdigest()[:20]

    def check_signature(self, pair_id: str, left: str, signature: str) -> None:
        if not hmac.compare_digest(self.signature(pair_id, left), signature or ""):
            raise AccessDenied("bad render signature")

    def render_url(self, pair_id: str, left: str) -> str:
        return f"/api/render/{pair_id}/{left}.gif?sig={self.signature(pair_id, left)}"

    def _shown(self, shown: Shown | None, labeller: str) -> dict[str, Any]:
        """The answer of next/label/undo: the pair shown now (None when done) and the progress."""
        pair = None
        if shown is not None:
            if self.prefetch > 0:
                ahead = self.store.upcoming(labeller, self.prefetch)
                self.renderer.prefetch([(shown.pair_id, shown.left_motion), *ahead])
            pair = {**asdict(shown), "render": self.render_url(shown.pair_id, shown.left_motion)}
        return {"pair": pair, "progress": self.store.progress(labeller)}

    def next(self, labeller: str, token: str | None) -> dict[str, Any]:
        """The pair ``labeller`` is to label (the same one until they label it)."""
        self.check_token(token)
        return self._shown(self.store.next_pair(labeller), labeller)

    def label(
        self, labeller: str, token: str | None, pair_id: str, side: str, degree: str | None, left_motion: str
    ) -> dict[str, Any]:
        """Store a label (one transaction), then the next pair; ``stored`` says whether the label was new
        (False: the same label was stored before, e.g. a retry)."""
        self.check_token(token)
        label, new = self.store.record_label(labeller, pair_id, side, degree, left_motion)
        return {"label_id": label.label_id, "stored": new, **self.next(labeller, token)}

    def undo(self, labeller: str, token: str | None) -> dict[str, Any]:
        """Take back ``labeller``'s last label; its pair is shown again (``undone`` is None without one)."""
        self.check_token(token)
        label = self.store.undo_last(labeller)
        undone = None if label is None else {"pair_id": label.pair_id, "label_id": label.label_id}
        return {"undone": undone, **self.next(labeller, token)}

    def progress(self, labeller: str, token: str | None) -> dict[str, Any]:
        self.check_token(token)
        return self.store.progress(labeller)
