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

from ..storage.atomic import partial_path
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
    start_size = part.stat().st_size if part.exists() else 0
    download = _Download(url, part, expected_size, etag, policy, progress, stop)

    size = _with_retries(url, policy, download.once, stop)
    assert isinstance(size, int)
    if expected_size is not None and size != expected_size:
        raise DownloadError(f"{url}: got {size} bytes, expected {expected_size}")
    if part.exists():
        os.replace(part, dest)
    elif not dest.exists():  # pragma: no cover - defensive
        raise DownloadError(f"{url}: download finished but {part} is missing")
    return FetchResult(dest, size, download.hasher.hexdigest(), start_size, download.requests)


class _Download:
    """One file's download into its `.partial`, over as many requests as it takes: the SHA-256 of
    the bytes in the partial file so far (`hasher` covers its first `hashed` bytes) and the
    number of requests made. `once` is one attempt, retried by `_with_retries`."""

    def __init__(self, url: str, part: Path, expected_size: int | None, etag: str | None,
                 policy: RetryPolicy, progress: Callable[[int], None] | None, stop: threading.Event | None):
        self.url, self.part, self.expected_size, self.etag = url, part, expected_size, etag
        self.policy, self.progress, self.stop = policy, progress, stop
        self.hasher = hashlib.sha256()
        self.hashed = 0
        self.requests = 0

    def rehash_prefix(self, size: int) -> None:
        if self.hashed == size:
            return
        h = hashlib.sha256()
        done = 0
        if size:
            with open(self.part, "rb") as f:
                while done < size:
                    block = f.read(min(CHUNK, size - done))
                    if not block:
                        break
                    h.update(block)
                    done += len(block)
        self.hasher, self.hashed = h, done

    def truncate(self) -> None:
        with open(self.part, "wb"):
            pass
        self.hasher, self.hashed = hashlib.sha256(), 0

    def once(self) -> int:
        """One request from where the partial file ends; the size of the partial file after it."""
        have = self.part.stat().st_size if self.part.exists() else 0
        if self.expected_size is not None:
            if have == self.expected_size:
                self.rehash_prefix(have)
                return have
            if have > self.expected_size:
                self.truncate()
                have = 0
        resp = self._request(have)
        if isinstance(resp, int):
            return resp
        with resp:
            have, mode, total = self._continue_or_restart(resp, have)
            target = total if total is not None else self.expected_size
            got = self._copy_body(resp, have, mode, target)
            if target is not None and got != target:
                raise _Transient(f"connection closed at {got} of {target} bytes")
            return got

    def _request(self, have: int):
        """The response for the bytes past `have`, or the final size when the server says there
        are none left and the partial file is whole."""
        headers: dict[str, str] = {}
        if have:
            headers["Range"] = f"bytes={have}-"
            if self.etag:
                headers["If-Range"] = self.etag
        self.requests += 1
        try:
            return _open(self.url, headers, self.policy.timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # nothing left past `have`, or the file changed
                info = head(self.url, policy=self.policy, stop=self.stop)
                if info.size == have and (self.expected_size is None or self.expected_size == have):
                    self.rehash_prefix(have)
                    return have
                self.truncate()
                raise _Transient("HTTP 416 with a partial file that does not match; restarting") from e
            raise

    def _continue_or_restart(self, resp, have: int) -> tuple[int, str, int | None]:
        """(bytes kept, file mode, the file's total size if the server says) for a response:
        a 206 continues the partial file, a 200 starts it over."""
        if resp.status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range") or "")
            if not m or int(m.group(1)) != have:
                self.truncate()
                raise _Transient(f"unexpected Content-Range {resp.headers.get('Content-Range')!r}")
            total = int(m.group(3)) if m.group(3) != "*" else None
            mode = "ab"
            self.rehash_prefix(have)
        else:
            # 200: the server ignored Range (or If-Range said the file changed): start over.
            length = resp.headers.get("Content-Length")
            total = int(length) if length is not None and length.isdigit() else None
            have, mode = 0, "wb"
            self.hasher, self.hashed = hashlib.sha256(), 0
        if self.expected_size is not None and total is not None and total != self.expected_size:
            raise DownloadError(
                f"{self.url}: server reports {total} bytes, expected {self.expected_size} (remote file changed?)"
            )
        return have, mode, total

    def _copy_body(self, resp, have: int, mode: str, target: int | None) -> int:
        """Append the body to the partial file (hashing it); the partial file's size after."""
        got = have
        with open(self.part, mode) as f:
            while True:
                if self.stop is not None and self.stop.is_set():
                    raise Aborted(self.url)
                # read1: whatever has arrived (up to CHUNK), so a kill loses little
                block = resp.read1(CHUNK if target is None else min(CHUNK, max(target - got, 1)))
                if not block:
                    break
                f.write(block)
                self.hasher.update(block)
                got += len(block)
                self.hashed = got
                if self.progress is not None:
                    self.progress(len(block))
        return got
