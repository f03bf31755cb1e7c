"""Uploads streamed to disk: the dashboard's own handler for ``PUT /_stcore/upload_file/<session>/<file>``.

Streamlit's upload route parses the body into memory and keeps every accepted file as ``bytes`` in its
``MemoryUploadedFileManager`` until the browser session ends: five 20 MB videos held ~100 MB of server memory
(benchmarks/bench_upload_memory.py). The gateway (rehab.app.gateway) answers that route itself, after its
login and ownership checks: :meth:`UploadSpool.receive` parses the multipart body as it arrives and writes
the one file in it to an owner-only file in the data folder's ``tmp/uploads/``, counting the bytes actually
received (a missing or false Content-Length changes nothing) and answering 413 as soon as they pass the
limit, without reading the rest. Only a small buffer per upload is ever in memory.

Streamlit still has to know the file, or ``st.file_uploader`` would not return it: the handler registers a
record with no content in Streamlit's manager (same id, name and type), and the page finds the bytes on disk
with :meth:`UploadSpool.get` (see :func:`rehab.app.common.spooled_upload`). The files go when Streamlit drops
its records (the widget's remove button, the end of the browser session), on a failed or interrupted upload,
when the server stops, and at the next start (for a server that was killed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shutil
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

UPLOADS_DIR = "uploads"
# Multipart framing (boundary lines, part headers) allowed around the file in an upload's body.
UPLOAD_FRAMING_BYTES = 64 * 1024
# Received bytes are written to disk in pieces of this size, off the event loop: the most memory one upload uses.
WRITE_CHUNK_BYTES = 1024 * 1024
# Files one browser session may hold at once (each up to the limit): bounds the disk one tab can fill.
MAX_FILES_PER_SESSION = 32
# Longest original file name kept (the name is shown and recorded, never used as a path).
MAX_NAME_CHARS = 200
_SAFE_SUFFIX = re.compile(r"^\.[a-z0-9]{1,10}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


@dataclass(frozen=True)
class SpooledUpload:
    """One uploaded file on disk."""

    path: Path
    name: str
    content_type: str
    size_bytes: int


class UploadRefused(Exception):
    """An upload answered with an HTTP error (status, one-line reason) before or while it was received."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ClientGone(Exception):
    """The client closed the connection before its upload was complete."""


def clean_name(name: str) -> str:
    """The file name as shown and recorded: no folders, no control characters, not over-long."""
    base = re.split(r"[/\\]", name)[-1]
    base = _CONTROL.sub("", base).strip()
    return base[-MAX_NAME_CHARS:] or "upload"


class UploadSpool:
    """The uploads of one server process: files in ``folder``, found by (Streamlit session id, file id)."""

    def __init__(self, folder: Path, max_file_bytes: int) -> None:
        self.folder = Path(folder)
        self.max_file_bytes = max_file_bytes
        self._files: dict[tuple[str, str], SpooledUpload] = {}
        self._lock = threading.Lock()
        self._watched: object | None = None

    # ---------------------------------------------------------------------------------------------
    # the registry

    def get(self, session_id: str, file_id: str) -> SpooledUpload | None:
        with self._lock:
            upload = self._files.get((session_id, file_id))
        return upload if upload is not None and upload.path.is_file() else None

    def count(self, session_id: str | None = None) -> int:
        with self._lock:
            return sum(1 for s, _ in self._files if session_id is None or s == session_id)

    def remove(self, session_id: str, file_id: str) -> None:
        with self._lock:
            upload = self._files.pop((session_id, file_id), None)
        if upload is not None:
            _unlink(upload.path)

    def remove_session(self, session_id: str) -> None:
        with self._lock:
            keys = [k for k in self._files if k[0] == session_id]
            uploads = [self._files.pop(k) for k in keys]
        for upload in uploads:
            _unlink(upload.path)

    def clear(self) -> None:
        """Remove every file (the server is stopping)."""
        with self._lock:
            self._files.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _add(self, session_id: str, file_id: str, upload: SpooledUpload) -> None:
        with self._lock:
            old = self._files.get((session_id, file_id))
            self._files[(session_id, file_id)] = upload
        if old is not None and old.path != upload.path:
            _unlink(old.path)

    def watch(self, manager) -> None:
        """Remove the files whenever Streamlit's upload manager drops its records of them; idempotent."""
        if self._watched is manager:
            return
        remove_file, remove_session_files = manager.remove_file, manager.remove_session_files

        def on_remove_file(session_id: str, file_id: str) -> None:
            remove_file(session_id, file_id)
            self.remove(session_id, file_id)

        def on_remove_session_files(session_id: str) -> None:
            remove_session_files(session_id)
            self.remove_session(session_id)

        manager.remove_file, manager.remove_session_files = on_remove_file, on_remove_session_files
        self._watched = manager

    # ---------------------------------------------------------------------------------------------
    # the request

    async def receive(self, scope: Scope, receive: Receive, session_id: str, file_id: str) -> SpooledUpload:
        """Take one upload request's body onto disk and register it; UploadRefused / ClientGone otherwise.

        The caller has checked the login, the session's owner and the declared length.
        """
        from streamlit.runtime import Runtime
        from streamlit.runtime.uploaded_file_manager import UploadedFileRec

        _check_xsrf(scope)
        if not Runtime.exists() or not Runtime.instance().is_active_session(session_id):
            raise UploadRefused(400, "no such browser session (reload the page)")
        if self.count(session_id) >= MAX_FILES_PER_SESSION and self.get(session_id, file_id) is None:
            raise UploadRefused(413, f"at most {MAX_FILES_PER_SESSION} files per browser session; remove some first")
        boundary = _boundary(scope)
        from rehab.store import make_private_dir

        make_private_dir(self.folder)
        writer = _FileWriter(self.folder, self.max_file_bytes)
        try:
            await writer.read(receive, boundary, self.max_file_bytes + UPLOAD_FRAMING_BYTES)
        except BaseException:
            writer.discard()
            raise
        upload = SpooledUpload(writer.path, clean_name(writer.name), writer.content_type, writer.size_bytes)
        runtime = Runtime.instance()
        manager = runtime.uploaded_file_mgr
        self.watch(manager)
        if not runtime.is_active_session(session_id):  # the tab closed while its upload arrived
            writer.discard()
            raise UploadRefused(400, "the browser session ended during the upload (reload the page)")
        self._add(session_id, file_id, upload)
        # Streamlit's widget needs a record with this id; the content stays on disk.
        manager.add_file(session_id=session_id, file=UploadedFileRec(file_id=file_id, name=upload.name,
                                                                     type=upload.content_type, data=b""))
        log.info("upload of %d bytes into browser session %s stored on disk", upload.size_bytes, session_id)
        return upload


class _FileWriter:
    """The multipart parse of one request body, writing its single file part to a fresh owner-only file."""

    def __init__(self, folder: Path, max_file_bytes: int) -> None:
        self.folder = folder
        self.max_file_bytes = max_file_bytes
        self.path: Path | None = None
        self.name = ""
        self.content_type = "application/octet-stream"
        self.size_bytes = 0
        self._fd: int | None = None
        self._pending = bytearray()
        self._files = 0
        self._in_file = False
        self._file_complete = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, str] = {}
        self._error: UploadRefused | None = None

    async def read(self, receive: Receive, boundary: bytes, max_body_bytes: int) -> None:
        from python_multipart.multipart import MultipartParser

        parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_header_field": self._field, "on_header_value": self._value,
            "on_header_end": self._header_end, "on_headers_finished": self._headers_finished,
            "on_part_data": self._data, "on_part_end": self._part_end})
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            body = message.get("body", b"")
            received += len(body)
            if received > max_body_bytes:
                raise UploadRefused(413, f"upload larger than the limit of {self.max_file_bytes // (1024 * 1024)} MB")
            try:
                parser.write(body)
            except Exception as err:  # python-multipart's parse errors; the body is not a multipart upload
                raise UploadRefused(400, f"malformed upload body: {err}") from None
            if self._error is not None:
                raise self._error
            if len(self._pending) >= WRITE_CHUNK_BYTES:
                await self._flush()
            if not message.get("more_body", False):
                break
        try:
            parser.finalize()
        except Exception as err:
            raise UploadRefused(400, f"malformed upload body: {err}") from None
        if self._files != 1 or not self._file_complete:
            raise UploadRefused(400, f"expected 1 complete file in the upload, got {self._files}")
        await self._flush()
        os.close(self._fd)
        self._fd = None

    def discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.path is not None:
            _unlink(self.path)

    # parser callbacks (synchronous, inside parser.write)

    def _part_begin(self) -> None:
        self._headers = {}
        self._in_file = False

    def _field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        # Kept as the raw bytes (latin-1 maps each byte to one character): python-multipart parses the options
        # from latin-1, and the file name is decoded from UTF-8 below, as browsers send it.
        self._headers[self._header_field.decode("latin-1").lower()] = self._header_value.decode("latin-1")
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        if b"filename" not in options:
            return  # a plain form field: its few bytes count against the body limit and are dropped
        self._files += 1
        if self._files > 1:
            self._error = UploadRefused(400, "expected 1 file in the upload, got more")
            return
        self._in_file = True
        self.name = options[b"filename"].decode("utf-8", "replace")
        self.content_type = self._headers.get("content-type", "").strip() or self.content_type
        suffix = Path(clean_name(self.name)).suffix.lower()
        # A random name: nothing the client sent (ids, file name) becomes part of a path.
        self.path = self.folder / (secrets.token_hex(16) + (suffix if _SAFE_SUFFIX.match(suffix) else ""))
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file or self._error is not None:
            return
        self.size_bytes += end - start
        if self.size_bytes > self.max_file_bytes:
            self._error = UploadRefused(413, f"upload larger than the limit of {self.max_file_bytes // (1024 * 1024)} MB")
            return
        self._pending += data[start:end]

    def _part_end(self) -> None:
        if self._in_file:
            self._file_complete = True
            self._in_file = False

    async def _flush(self) -> None:
        if self._pending and self._fd is not None:
            data, self._pending = bytes(self._pending), bytearray()
            await asyncio.to_thread(_write_all, self._fd, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as err:
        log.error("could not remove the uploaded file %s: %s", path, err)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _boundary(scope: Scope) -> bytes:
    from python_multipart.multipart import parse_options_header

    kind, options = parse_options_header(_header(scope, b"content-type") or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadRefused(400, "an upload must be multipart/form-data with a boundary")
    return boundary


def _check_xsrf(scope: Scope) -> None:
    """Streamlit's own check (double-submit: the X-Xsrftoken header matches the XSRF cookie), which its
    upload route would have made: this handler answers in its place."""
    from streamlit.web.server.server_util import is_xsrf_enabled
    from streamlit.web.server.starlette.starlette_app_utils import validate_xsrf_token
    from streamlit.web.server.starlette.starlette_server_config import XSRF_COOKIE_NAME

    if not is_xsrf_enabled():
        return
    from starlette.requests import cookie_parser

    cookies = cookie_parser(_header(scope, b"cookie") or "")
    if not validate_xsrf_token(_header(scope, b"x-xsrftoken"), cookies.get(XSRF_COOKIE_NAME)):
        raise UploadRefused(403, "XSRF token missing or invalid")
