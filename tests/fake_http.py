"""A local HTTP file server for the download tests: 127.0.0.1 only, HEAD, Range, ETag,
slow paths, injected failures, and a log of every request."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class FakeServer:
    files: dict[str, bytes] = field(default_factory=dict)
    # path -> seconds to sleep after each 64 KiB written
    slow: dict[str, float] = field(default_factory=dict)
    # path -> list of HTTP status codes to answer (one per GET) before serving normally
    fail: dict[str, list[int]] = field(default_factory=dict)
    # path -> close the connection after this many body bytes, once
    cut: dict[str, int] = field(default_factory=dict)
    log: list[Request] = field(default_factory=list)
    base: str = ""

    def requests(self, method: str | None = None, path: str | None = None) -> list[Request]:
        return [r for r in self.log if (method is None or r.method == method) and (path is None or r.path == path)]

    def clear_log(self) -> None:
        self.log.clear()


def _handler(server: FakeServer):
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _common(self, body_wanted: bool):
            path = self.path.split("?", 1)[0]
            with lock:
                server.log.append(Request(self.command, path, self.headers.get("Range")))
                fails = server.fail.get(path)
                status_fail = fails.pop(0) if (fails and self.command == "GET") else None
                cut = server.cut.pop(path, None) if self.command == "GET" else None
            data = server.files.get(path)
            if data is None:
                self.send_error(404)
                return
            if status_fail is not None:
                self.send_response(status_fail)
                self.send_header("Content-Length", "0")
                self.send_header("Retry-After", "0")
                self.end_headers()
                return
            etag = '"' + hashlib.md5(data).hexdigest() + '"'
            start, status = 0, 200
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes=") and self.command == "GET":
                if_range = self.headers.get("If-Range")
                if if_range is None or if_range == etag:
                    first = int(rng[6:].split("-", 1)[0])
                    if first >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    start, status = first, 206
            body = data[start:]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", etag)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body_wanted:
                return
            delay = server.slow.get(path, 0.0)
            sent = 0
            step = 1 << 16
            try:
                while sent < len(body):
                    n = step if cut is None else min(step, cut - sent)
                    if n <= 0:
                        self.close_connection = True
                        return
                    self.wfile.write(body[sent : sent + n])
                    self.wfile.flush()
                    sent += n
                    if delay:
                        time.sleep(delay)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def do_HEAD(self):
            self._common(False)

        def do_GET(self):
            self._common(True)

    return Handler


class Serving:
    """Context manager: start the server in a thread; `.server.base` is its URL."""

    def __init__(self, fake: FakeServer):
        self.fake = fake
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        host, port = self.httpd.server_address[:2]
        self.fake.base = f"http://{host}:{port}"
        return self.fake

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def make_tar(members: list[tuple[str, bytes | str]], gz: bool) -> bytes:
    """A tar archive in memory (gzip with `gz`). members: (name, data) for files, (name/,
    anything) for folders, (name, 'SYMLINK:target') for links."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(data, str) and data.startswith("SYMLINK:"):
                info.type = tarfile.SYMTYPE
                info.linkname = data[8:]
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
