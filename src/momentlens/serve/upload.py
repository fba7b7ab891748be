"""An untrusted upload, from the socket to a probed video file in a private folder.

* **Size**: a declared ``Content-Length`` over the limit is refused before anything is
  read; the body is then counted while it streams and refused as soon as it passes the
  limit, so no more than ``max_bytes`` (plus one network chunk) ever reaches the disk.
* **Names**: the client's file name is only shown back (:func:`display_name`); the file
  is written as ``upload.bin`` in a folder made by :func:`tempfile.mkdtemp` (mode 0700).
* **Content**: :func:`probe` opens the file with the decoder, refuses what is not a
  video, frames larger than :data:`MAX_PIXELS` and videos longer than the limit.

Every refusal is an :class:`UploadError` with an HTTP status and one readable line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from momentlens.utils import MomentlensError

MB = 1 << 20
MAX_PIXELS = 4096 * 4096  # a header declaring larger frames is refused before decoding
UPLOAD_FILE = "upload.bin"
FIELD = "file"


class UploadError(MomentlensError):
    """A refused request: ``status`` (4xx/5xx) and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def display_name(filename: str | None) -> str:
    """The client's file name reduced to something safe to show: its last path part,
    printable characters only, at most 80 of them. Never used as a path."""
    base = re.split(r"[\\/]", filename or "")[-1]
    clean = "".join(c for c in base if c.isprintable()).strip()[:80]
    return clean or "upload"


class _FileSink:
    """python-multipart callbacks that write the first ``file`` part to ``dest`` and
    count its bytes; any other part is read and dropped."""

    def __init__(self, dest: Path, max_bytes: int) -> None:
        self.dest, self.max_bytes = dest, max_bytes
        self.name: str | None = None
        self.size, self.found, self.error = 0, False, None
        self._headers: dict[bytes, bytes] = {}
        self._field, self._fh = b"", None

    def callbacks(self) -> dict[str, Any]:
        return {"on_part_begin": self._begin, "on_header_field": self._hfield,
                "on_header_value": self._hvalue, "on_headers_finished": self._open,
                "on_part_data": self._data, "on_part_end": self._end}

    def _begin(self) -> None:
        self._headers, self._field = {}, b""

    def _hfield(self, data: bytes, start: int, end: int) -> None:
        self._field = data[start:end].lower()

    def _hvalue(self, data: bytes, start: int, end: int) -> None:
        self._headers[self._field] = self._headers.get(self._field, b"") + data[start:end]

    def _open(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        if params.get(b"name") == FIELD.encode() and not self.found:
            self.found = True
            self.name = display_name(params.get(b"filename", b"").decode("utf-8", "replace"))
            fd = os.open(self.dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._fh = os.fdopen(fd, "wb")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._fh is None:
            return
        self.size += end - start
        if self.size > self.max_bytes:
            self.error = too_large(self.max_bytes)
            return
        self._fh.write(data[start:end])

    def _end(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def close(self) -> None:
        self._end()


def too_large(max_bytes: int, size: int | None = None) -> UploadError:
    what = f"{size / MB:.0f} MB > " if size is not None else "over the "
    return UploadError(413, f"upload too large: {what}limit {max_bytes / MB:g} MB")


async def receive(request: Any, dest: Path, max_bytes: int) -> tuple[str, int]:
    """Stream the multipart body of ``request`` (a Starlette request) into ``dest``;
    returns ``(display name, bytes)`` of the ``file`` part (module doc)."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadError(415, "expected a multipart/form-data upload with a 'file' field")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + MB:  # + room for the form's framing
        raise too_large(max_bytes, int(declared))
    sink = _FileSink(dest, max_bytes)
    parser = MultipartParser(params[b"boundary"], sink.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes + MB:
                raise too_large(max_bytes)
            parser.write(chunk)
            if sink.error is not None:
                raise sink.error
        parser.finalize()
    except ValueError as exc:  # python-multipart's malformed-body errors
        raise UploadError(400, f"malformed multipart upload: {exc}") from None
    finally:
        sink.close()
    if not sink.found:
        raise UploadError(400, f"no '{FIELD}' field in the upload")
    return sink.name or "upload", sink.size


def probe(path: Path, name: str, max_seconds: float | None) -> float:
    """Duration in seconds of the uploaded video at ``path``, or an :class:`UploadError`:
    empty (400), not a video (415), frames too large or video too long (413)."""
    from momentlens.data.decode import open_video
    from momentlens.data.formats import DEFAULT_FPS

    if path.stat().st_size == 0:
        raise UploadError(400, f"empty file: {name}")
    try:
        with open_video(path, backend="pyav") as reader:
            frames, fps, (h, w) = reader.num_frames, reader.fps, reader.size
    except Exception as exc:  # FFmpeg raises many types for hostile input
        why = " (no video stream)" if "no video stream" in str(exc) else ""
        raise UploadError(415, f"not a video: {name}{why}") from None
    if h * w > MAX_PIXELS:
        raise UploadError(413, f"frames too large: {w}x{h} > limit {MAX_PIXELS} pixels")
    duration = frames / (fps or DEFAULT_FPS)
    if max_seconds and duration > max_seconds:
        raise UploadError(413, f"video too long: {duration:.0f} s > limit {max_seconds:g} s")
    return duration
