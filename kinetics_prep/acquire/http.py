"""Resumable HTTP downloads with the standard library only.

One job: bring one URL to one local file, byte-exact. The file grows under ``<name>.partial``;
a later call (after a crash, Ctrl-C or kill) continues from the bytes already there with an
HTTP Range request (``If-Range`` guards against the remote file having changed). Transient
failures (connection errors, timeouts, truncated bodies, 408/429/5xx) are retried with
exponential backoff; each retry resumes too. The SHA-256 is computed while the bytes arrive
(the prefix already on disk is hashed first when resuming).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..atomic import partial_path
from ..errors import ConfigError, DownloadError

USER_AGENT = "kinetics-prep/0.1 (+urllib)"
CHUNK = 1 << 18
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: `retries` extra attempts, sleeping backoff * 2**k (capped) between them."""

    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff < 0 or self.max_backoff < 0 or self.timeout <= 0:
            raise ConfigError(f"invalid retry policy {self}")

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))


@dataclass(frozen=True)
class RemoteInfo:
    url: str
    size: int | None
    etag: str | None
    accept_ranges: bool


@dataclass(frozen=True)
class FetchResult:
    path: Path
    size: int
    sha256: str
    resumed_from: int  # bytes already on disk when this call started
    requests: int  # GET requests made


class Aborted(Exception):
    """Raised inside a transfer when the caller's stop event is set (Ctrl-C elsewhere)."""


class _Transient(Exception):
    def __init__(self, msg: str, retry_after: float | None = None):
        super().__init__(msg)
        self.retry_after = retry_after


def _open(url: str, headers: dict[str, str], timeout: float, method: str = "GET"):
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers}, method=method)
    return urllib.request.urlopen(req, timeout=timeout)


def _classify(url: str, e: BaseException) -> BaseException:
    """Turn a urllib/socket failure into _Transient (retry) or DownloadError (give up)."""
    if isinstance(e, urllib.error.HTTPError):
        if e.code in _RETRY_STATUS:
            ra = e.headers.get("Retry-After") if e.headers else None
            try:
                retry_after = float(ra) if ra is not None else None
            except ValueError:
                retry_after = None
            return _Transient(f"HTTP {e.code} {e.reason}", retry_after)
        return DownloadError(f"{url}: HTTP {e.code} {e.reason}")
    if isinstance(e, (urllib.error.URLError, socket.timeout, ConnectionError, http.client.HTTPException, TimeoutError)):
        return _Transient(f"{type(e).__name__}: {e}")
    return e


def _with_retries(url: str, policy: RetryPolicy, fn: Callable[[], object], stop: threading.Event | None):
    attempt = 0
    while True:
        try:
            return fn()
        except (Aborted, DownloadError, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - classified right here, nothing swallowed
            err = e if isinstance(e, _Transient) else _classify(url, e)
            if not isinstance(err, _Transient):
                if err is e:
                    raise
                raise err from e
            attempt += 1
            if attempt > policy.retries:
                raise DownloadError(f"{url}: gave up after {attempt} attempts: {err}") from e
            delay = policy.delay(attempt)
            if err.retry_after is not None:
                delay = min(policy.max_backoff, max(delay, err.retry_after))
            if stop is not None:
                if stop.wait(delay):
                    raise Aborted(url) from None
            else:
                time.sleep(delay)


def head(url: str, *, policy: RetryPolicy = RetryPolicy(), stop: threading.Event | None = None) -> RemoteInfo:
    """Size (Content-Length), ETag and Range support of a remote file, via a HEAD request."""

    def once() -> RemoteInfo:
        with _open(url, {}, policy.timeout, method="HEAD") as r:
            length = r.headers.get("Content-Length")
            return RemoteInfo(
                url=url,
                size=int(length) if length is not None and length.isdigit() else None,
                etag=r.headers.get("ETag"),
                accept_ranges="bytes" in (r.headers.get("Accept-Ranges") or "").lower(),
            )

    return _with_retries(url, policy, once, stop)  # type: ignore[return-value]


def sha256_file(path: Path, *, chunk: int = CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(
    url: str,
    dest: Path,
    *,
    expected_size: int | None = None,
    etag: str | None = None,
    policy: RetryPolicy = RetryPolicy(),
    progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> FetchResult:
    """Download `url` to `dest`, resuming `dest.partial` if present; atomic rename at the end.

    `expected_size` (from a HEAD) is checked against the server's Content-Length/Content-Range
    and against the bytes received; a mismatch is a DownloadError, never a silently short file.
    `progress(n)` is called with every n bytes written (and once with the resumed prefix size
    is NOT reported: callers set their bar's initial value themselves).
    """
    dest = Path(dest)
    part = partial_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    state = {"hasher": hashlib.sha256(), "hashed": 0, "requests": 0}
    start_size = part.stat().st_size if part.exists() else 0

    def rehash_prefix(size: int) -> None:
        if state["hashed"] == size:
            return
        h = hashlib.sha256()
        done = 0
        if size:
            with open(part, "rb") as f:
                while done < size:
                    block = f.read(min(CHUNK, size - done))
                    if not block:
                        break
                    h.update(block)
                    done += len(block)
        state["hasher"], state["hashed"] = h, done

    def truncate() -> None:
        with open(part, "wb"):
            pass
        state["hasher"], state["hashed"] = hashlib.sha256(), 0

    def once() -> int:
        have = part.stat().st_size if part.exists() else 0
        if expected_size is not None:
            if have == expected_size:
                rehash_prefix(have)
                return have
            if have > expected_size:
                truncate()
                have = 0
        headers: dict[str, str] = {}
        if have:
            headers["Range"] = f"bytes={have}-"
            if etag:
                headers["If-Range"] = etag
        state["requests"] += 1
        try:
            resp = _open(url, headers, policy.timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # nothing left past `have`, or the file changed
                info = head(url, policy=policy, stop=stop)
                if info.size == have and (expected_size is None or expected_size == have):
                    rehash_prefix(have)
                    return have
                truncate()
                raise _Transient("HTTP 416 with a partial file that does not match; restarting") from e
            raise
        with resp:
            if resp.status == 206:
                m = _CONTENT_RANGE.match(resp.headers.get("Content-Range") or "")
                if not m or int(m.group(1)) != have:
                    truncate()
                    raise _Transient(f"unexpected Content-Range {resp.headers.get('Content-Range')!r}")
                total = int(m.group(3)) if m.group(3) != "*" else None
                mode = "ab"
                rehash_prefix(have)
            else:
                # 200: the server ignored Range (or If-Range said the file changed): start over.
                length = resp.headers.get("Content-Length")
                total = int(length) if length is not None and length.isdigit() else None
                have, mode = 0, "wb"
                state["hasher"], state["hashed"] = hashlib.sha256(), 0
            if expected_size is not None and total is not None and total != expected_size:
                raise DownloadError(
                    f"{url}: server reports {total} bytes, expected {expected_size} (remote file changed?)"
                )
            target = total if total is not None else expected_size
            got = have
            with open(part, mode) as f:
                while True:
                    if stop is not None and stop.is_set():
                        raise Aborted(url)
                    # read1: whatever has arrived (up to CHUNK), so a kill loses little
                    block = resp.read1(CHUNK if target is None else min(CHUNK, max(target - got, 1)))
                    if not block:
                        break
                    f.write(block)
                    state["hasher"].update(block)
                    got += len(block)
                    state["hashed"] = got
                    if progress is not None:
                        progress(len(block))
            if target is not None and got != target:
                raise _Transient(f"connection closed at {got} of {target} bytes")
            return got

    size = _with_retries(url, policy, once, stop)
    assert isinstance(size, int)
    if expected_size is not None and size != expected_size:
        raise DownloadError(f"{url}: got {size} bytes, expected {expected_size}")
    if part.exists():
        os.replace(part, dest)
    elif not dest.exists():  # pragma: no cover - defensive
        raise DownloadError(f"{url}: download finished but {part} is missing")
    return FetchResult(dest, size, state["hasher"].hexdigest(), start_size, state["requests"])
