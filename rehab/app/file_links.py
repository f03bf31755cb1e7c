"""Recordings played from disk: links that stream a file to the browser session that was shown it.

``st.video(path)`` reads the whole file into the server's memory (Streamlit keeps media in memory while a page
shows them): a 30-minute recording is ~60 MB of RSS for as long as it is on screen, per browser. Instead a page
asks for a link (:meth:`FileLinks.url_for`) and hands that URL to ``st.video``; ``GET /files/<token>`` then
streams the file from disk with range requests (seeking), never holding it. A token names one file for one
Streamlit session, and is answered only to the login bound to that session while it is connected: the gateway's
middleware checks it (:meth:`FileLinks.allowed`) where it checks ``/media``.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

FILES_PREFIX = "/files/"
# Links kept at a time (a few per open page); the oldest are forgotten first.
MAX_LINKS = 1024


@dataclass(frozen=True)
class _Link:
    streamlit_session: str
    path: Path


class FileLinks:
    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self._links: OrderedDict[str, _Link] = OrderedDict()
        self._tokens: dict[tuple[str, Path], str] = {}
        self._lock = threading.Lock()

    def url_for(self, streamlit_session: str, path: str | Path) -> str:
        """The path (``/files/<token>``) that streams ``path`` to this Streamlit session; the same on reruns."""
        path = Path(path).resolve()
        key = (streamlit_session, path)
        with self._lock:
            token = self._tokens.get(key)
            if token is None:
                token = secrets.token_urlsafe(24)
                self._tokens[key] = token
                self._links[token] = _Link(streamlit_session, path)
                while len(self._links) > MAX_LINKS:
                    _, old = self._links.popitem(last=False)
                    self._tokens.pop((old.streamlit_session, old.path), None)
            else:
                self._links.move_to_end(token)
        return f"{FILES_PREFIX}{token}"

    def allowed(self, token: str, login) -> bool:
        """Whether ``token`` names a file shown to a connected Streamlit session of ``login``."""
        with self._lock:
            found = self._links.get(token)
        return found is not None and self.gateway.session_connected(found.streamlit_session, login)

    async def serve(self, request):
        """The file, streamed from disk (the middleware has checked the login when one is required)."""
        from starlette.responses import FileResponse, PlainTextResponse

        with self._lock:
            found = self._links.get(request.path_params.get("token", ""))
        if found is None or not found.path.is_file():
            return PlainTextResponse("no such file for this session\n", status_code=404)
        # ?download=1: as an attachment under the file's own name (a download link), else inline (a video); the
        # type is guessed from the name.
        return FileResponse(found.path, filename=found.path.name if request.query_params.get("download") else None,
                            headers={"cache-control": "private, no-store"})
