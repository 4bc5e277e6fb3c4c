"""`download`: a split's video archives from CVDF -> a flat folder of clips.

ROOT layout (ROOT = --root, e.g. data/kinetics400):

    ROOT/videos_raw_{split}/{youtube_id}_{start:06d}_{end:06d}.mp4   flat; `arrange` sorts by class
    ROOT/archives/{split}/part_N.tar.gz(.partial)                     while downloading (--archive-dir)
    ROOT/.kinetics_prep/download_{dataset}_{split}.json               ledger: size, sha256, extracted
    ROOT/.kinetics_prep/path_lists/k400_{split}_path.txt              the cached list of parts

A part is done when the ledger says `extracted`; a rerun skips it without any request. A part
that was downloaded but not extracted is re-verified against its recorded SHA-256 before use.
A part that fails to extract is forgotten and fetched once more (sized by a fresh HEAD); if that
copy fails too, the part is reported as failed with what to do, and never recorded as good.
Parts download in parallel (one connection each, `connections` at a time) and each is
extracted and (unless `keep_archives`) deleted as soon as it is verified.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..storage.atomic import partial_path
from ..errors import ArchiveError, ConfigError, DownloadError, OutputError
from ..storage.layout import STATE_DIR
from . import http
from .archives import ExtractReport, extract_flat
from .ledger import JsonLedger
from .space import check_free_space
from .urls import (
    check_mirror,
    check_split,
    file_name,
    get_dataset,
    parse_path_list,
    remap,
)

REPLACEMENT_KEY = "replacement"


@dataclass(frozen=True)
class PartOutcome:
    name: str
    status: str  # "extracted" | "done-before" | "failed"
    downloaded_bytes: int = 0
    files: int = 0
    refused: tuple[tuple[str, str], ...] = ()
    error: str | None = None


@dataclass
class VideoDownloadSummary:
    dataset: str
    split: str
    out_dir: Path
    parts_total: int
    parts: list[PartOutcome] = field(default_factory=list)
    replacement: dict | None = None

    @property
    def failed(self) -> list[PartOutcome]:
        return [p for p in self.parts if p.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def downloaded_bytes(self) -> int:
        return sum(p.downloaded_bytes for p in self.parts)

    @property
    def files(self) -> int:
        return sum(p.files for p in self.parts)

    @property
    def refused(self) -> list[tuple[str, str, str]]:
        return [(p.name, m, r) for p in self.parts for (m, r) in p.refused]

    def lines(self) -> list[str]:
        done = sum(p.status != "failed" for p in self.parts)
        out = [
            f"{self.dataset} {self.split}: {done}/{self.parts_total} parts extracted into {self.out_dir}"
            f" ({self.files} files this run, {self.downloaded_bytes} bytes downloaded)"
        ]
        for part, member, reason in self.refused:
            out.append(f"  refused {part}: {member!r}: {reason}")
        for p in self.failed:
            out.append(f"  FAILED {p.name}: {p.error}")
        if self.replacement:
            out.append(f"  replacement: {self.replacement}")
        return out


def read_checksums(path: Path) -> dict[str, str]:
    """`sha256sum` format: '<hex>  <name>' per line -> {name: hex}."""
    out: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read checksum file {path}: {e}") from e
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise ConfigError(f"{path}:{n}: expected '<sha256>  <file name>'")
        out[Path(parts[1].lstrip("*")).name] = parts[0].lower()
    return out


def _clip_id(name: str) -> str | None:
    stem = name.rsplit(".", 1)[0]
    pieces = stem.rsplit("_", 2)
    if len(pieces) == 3 and pieces[1].isdigit() and pieces[2].isdigit():
        return pieces[0]
    return None


def _replacement_target(out_dir: Path) -> Callable[[str], Path | None]:
    """Replacement videos overwrite the clip of the same name, else the only clip of that id."""
    by_id: dict[str, list[str]] = {}
    for p in out_dir.iterdir():
        cid = _clip_id(p.name)
        if cid is not None and not p.name.endswith(".partial"):
            by_id.setdefault(cid, []).append(p.name)

    def target(base: str) -> Path | None:
        if (out_dir / base).exists():
            return out_dir / base
        names = by_id.get(_clip_id(base) or "", [])
        return out_dir / names[0] if len(names) == 1 else None

    return target


class _Bar:
    """tqdm byte bar shared by the worker threads (or nothing)."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str):
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=desc, dynamic_ncols=True,
            )

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def write(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.write(msg)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def download_videos(
    dataset: str,
    split: str,
    root: str | Path,
    *,
    mirror: str | None = None,
    connections: int = 4,
    keep_archives: bool = False,
    archive_dir: str | Path | None = None,
    check_space: bool = True,
    replacement: bool = True,
    checksums: str | Path | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
) -> VideoDownloadSummary:
    """Download and extract one split of a Kinetics dataset from the CVDF archives.

    Resumable at any point (see module doc). Returns a summary; parts that failed are listed
    in it (the others are still done), so check `summary.ok`.
    """
    src = get_dataset(dataset)
    check_split(split)
    mirror = check_mirror(mirror)
    if connections < 1:
        raise ConfigError(f"--connections must be >= 1, got {connections}")
    policy = http.RetryPolicy(retries=retries, backoff=backoff, timeout=timeout)
    expected = read_checksums(Path(checksums)) if checksums is not None else {}

    root = Path(root)
    state = root / STATE_DIR
    out_dir = root / f"videos_raw_{split}"
    arch_dir = Path(archive_dir) if archive_dir is not None else root / "archives" / split
    if arch_dir.resolve() == out_dir.resolve():
        raise ConfigError("--archive-dir must differ from the video folder")

    # 1. the list of parts, and which of them an earlier run finished
    urls = _part_urls(src.path_lists[split], mirror, state, policy)
    ledger = JsonLedger(state / f"download_{src.name}_{split}.json", {"dataset": src.name, "split": split})
    summary = VideoDownloadSummary(src.name, split, out_dir, parts_total=len(urls))
    pending = _not_extracted(urls, ledger, summary)
    repl_url = None
    if replacement and src.replacement and split in src.replacement_splits:
        if not ledger.get(REPLACEMENT_KEY).get("applied"):
            repl_url = remap(src.replacement, mirror)
    if not pending and repl_url is None:
        return summary

    out_dir.mkdir(parents=True, exist_ok=True)
    arch_dir.mkdir(parents=True, exist_ok=True)
    parts = _Parts(ledger, policy, arch_dir, out_dir, expected=expected, keep_archives=keep_archives,
                   connections=connections, repl_url=repl_url)
    # 2. sizes: the ledger's for verified archives, a HEAD request for the rest
    pending = parts.learn_sizes(pending, summary)
    jobs = pending + ([parts.repl_url] if parts.repl_url else [])
    # 3. disk space: archives still to fetch + the videos they hold (about the archive size)
    have = _check_disk(parts, pending, jobs, check_space)

    # 4. download + verify + extract, `connections` parts at a time
    parts.bar = _Bar(progress, sum(parts.infos[u].size for u in jobs), sum(have.values()),  # type: ignore[misc]
                     f"{src.name} {split}")
    try:
        summary.parts.extend(parts.run(pending))
        if parts.repl_url is not None:
            _apply_replacement(parts, summary)
    finally:
        parts.bar.close()
    summary.parts.sort(key=lambda p: p.name)
    return summary


def _part_urls(path_list_url: str, mirror: str | None, state: Path, policy: http.RetryPolicy) -> list[str]:
    """The split's archive URLs from its path list (cached: a rerun makes no request for it)."""
    list_url = remap(path_list_url, mirror)
    list_path = state / "path_lists" / file_name(list_url)
    if not list_path.exists():
        http.fetch(list_url, list_path, policy=policy)
    urls = parse_path_list(list_path.read_text(encoding="utf-8"), list_url, mirror)
    if not urls:
        raise DownloadError(f"path list {list_url} names no archive")
    return urls


def _not_extracted(urls: list[str], ledger: JsonLedger, summary: VideoDownloadSummary) -> list[str]:
    """The parts still to do; those the ledger says are extracted go into `summary` as done."""
    pending: list[str] = []
    for url in urls:
        if ledger.get(file_name(url)).get("extracted"):
            summary.parts.append(PartOutcome(file_name(url), "done-before"))
        else:
            pending.append(url)
    return pending


def _check_disk(parts: _Parts, pending: list[str], jobs: list[str], check_space: bool) -> dict[str, int]:
    """Refuse before downloading when the archives still to fetch and the videos they hold do not
    fit; return the bytes of each job already on disk (the byte bar starts there)."""
    have = {url: parts.on_disk(url) for url in jobs}
    to_fetch = {url: max(parts.infos[url].size - have[url], 0) for url in jobs}  # type: ignore[operator]
    video_bytes = sum(parts.infos[u].size for u in pending)  # type: ignore[misc]
    if parts.keep_archives:
        archive_bytes = sum(to_fetch.values())
    else:  # each archive is deleted once extracted: at most `connections` live at once
        biggest = sorted(to_fetch.values(), reverse=True)[:parts.connections]
        archive_bytes = sum(biggest)
    if check_space:
        check_free_space({parts.out_dir: video_bytes, parts.arch_dir: archive_bytes})
    return have


def _apply_replacement(parts: _Parts, summary: VideoDownloadSummary) -> None:
    """The replacement archive goes last, over the extracted parts, and only when none failed."""
    if summary.failed:
        summary.replacement = {"applied": False, "reason": "some parts failed; rerun first"}
        return
    (repl,) = parts.run([parts.repl_url])  # type: ignore[list-item]
    if repl.status == "failed":
        summary.parts.append(repl)
    else:
        e = parts.ledger.get(REPLACEMENT_KEY)
        summary.replacement = {"applied": True, "replaced": e.get("replaced"), "unmatched": e.get("unmatched")}


class _Parts:
    """What the worker threads share while one split's parts download: the ledger, the retry
    policy, the stop flag (set on Ctrl-C), the byte bar and the sizes the HEAD requests gave."""

    def __init__(self, ledger: JsonLedger, policy: http.RetryPolicy, arch_dir: Path, out_dir: Path, *,
                 expected: dict[str, str], keep_archives: bool, connections: int, repl_url: str | None):
        self.ledger, self.policy = ledger, policy
        self.arch_dir, self.out_dir = arch_dir, out_dir
        self.expected, self.keep_archives, self.connections = expected, keep_archives, connections
        self.repl_url = repl_url
        self.stop = threading.Event()
        self.infos: dict[str, http.RemoteInfo] = {}
        self.bar = _Bar(False, 0, 0, "")  # the real bar once the sizes are known

    def size_of(self, url: str) -> tuple[str, http.RemoteInfo | str]:
        """The ledger's size for a verified archive on disk, else a HEAD request's (or why not)."""
        entry = self.ledger.get(file_name(url))
        if entry.get("downloaded") and (self.arch_dir / file_name(url)).exists():
            return url, http.RemoteInfo(url, entry["size"], entry.get("etag"), True)
        try:
            info = http.head(url, policy=self.policy, stop=self.stop)
        except DownloadError as e:
            return url, str(e)
        if info.size is None:
            return url, f"{url}: the server gives no Content-Length; cannot verify the download"
        return url, info

    def learn_sizes(self, pending: list[str], summary: VideoDownloadSummary) -> list[str]:
        """Size every job; a part whose HEAD failed for good is reported as failed, the others
        go on (returned). A replacement that cannot be sized is dropped."""
        with ThreadPoolExecutor(max_workers=min(self.connections, 16)) as pool:
            heads = dict(pool.map(self.size_of, pending + ([self.repl_url] if self.repl_url else [])))
        for url, info in heads.items():
            if isinstance(info, str):
                summary.parts.append(PartOutcome(file_name(url), "failed", error=info))
        self.infos = {u: i for u, i in heads.items() if not isinstance(i, str)}
        if self.repl_url is not None and self.repl_url not in self.infos:
            self.repl_url = None
        return [u for u in pending if u in self.infos]

    def on_disk(self, url: str) -> int:
        """Bytes of this archive already here, finished or partial."""
        p = self.arch_dir / file_name(url)
        if p.exists():
            return p.stat().st_size
        pp = partial_path(p)
        return pp.stat().st_size if pp.exists() else 0

    def download(self, url: str, name: str, archive: Path, size: int | None, etag: str | None) -> tuple[int, str]:
        """Fetch one part (verified against `size`) and record it as downloaded, not yet good."""
        res = http.fetch(
            url, archive, expected_size=size, etag=etag, policy=self.policy, progress=self.bar.update,
            stop=self.stop,
        )
        digest = res.sha256
        expected = self.expected
        if expected.get(name) and expected[name] != digest:
            archive.unlink()
            raise DownloadError(f"{name}: sha256 {digest} does not match the checksum file ({expected[name]})")
        self.ledger.update(name, url=url, size=res.size, sha256=digest, etag=etag, downloaded=True)
        return res.size - res.resumed_from, digest

    def extract(self, url: str, archive: Path) -> ExtractReport:
        if self.stop.is_set():
            raise http.Aborted(url)
        target = _replacement_target(self.out_dir) if url == self.repl_url else None
        return extract_flat(archive, self.out_dir, target=target)

    def _digest_on_disk(self, name: str, archive: Path) -> str | None:
        """The recorded sha256 of an archive downloaded earlier, if it still matches its file."""
        entry = self.ledger.get(name)
        digest = entry.get("sha256") if entry.get("downloaded") and archive.exists() else None
        if digest is not None and http.sha256_file(archive) != digest:
            self.bar.write(f"{name}: archive on disk no longer matches its recorded sha256; downloading again")
            archive.unlink()
            digest = None
        return digest

    def _extract_or_refetch(self, url: str, name: str, archive: Path, digest: str) -> tuple[ExtractReport, int, str]:
        """Extract; an archive that cannot be extracted is fetched once more and tried again.
        Returns the report, the bytes fetched again and the digest of the archive extracted."""
        try:
            return self.extract(url, archive), 0, digest
        except ArchiveError as first:
            # A damaged archive (a short body the server announced as complete, a copy gone
            # bad on disk, a mirror serving a broken file) must not stay recorded as
            # downloaded: every rerun would reuse it and fail the same way without a
            # request. Forget it and fetch it once more, sized by a fresh HEAD.
            self.ledger.update(name, downloaded=False, damaged_sha256=digest)
            archive.unlink(missing_ok=True)
            self.bar.write(f"{name}: cannot be extracted ({first}); downloading it again")
            fresh = http.head(url, policy=self.policy, stop=self.stop)
            if fresh.size is None:
                raise DownloadError(f"{url}: the server gives no Content-Length; cannot verify the "
                                    "download") from first
        again, digest = self.download(url, name, archive, fresh.size, fresh.etag)
        try:
            return self.extract(url, archive), again, digest
        except ArchiveError as second:
            self.ledger.update(name, downloaded=False, damaged_sha256=digest)
            archive.unlink(missing_ok=True)
            raise ArchiveError(
                f"{name}: still cannot be extracted after downloading it again ({fresh.size} bytes, "
                f"the size the server announces; sha256 {digest}): {second}; the copy on {url} "
                "looks damaged: try another mirror (--mirror) or later, then rerun download "
                "(the other parts stay done)"
            ) from second

    def _record_extracted(self, url: str, name: str, digest: str, report: ExtractReport) -> None:
        refused = [list(r) for r in report.refused]
        if url == self.repl_url:
            self.ledger.update(REPLACEMENT_KEY, applied=True, replaced=report.written, unmatched=report.skipped,
                               refused=refused, sha256=digest)
        self.ledger.update(name, extracted=True, files=report.written, skipped=report.skipped, refused=refused)

    def work(self, url: str) -> PartOutcome:
        """One part, start to end: reuse or fetch, extract (refetching a damaged copy once),
        record, delete the archive unless kept."""
        name = file_name(url)
        info = self.infos[url]
        archive = self.arch_dir / name
        try:
            fetched = 0
            digest = self._digest_on_disk(name, archive)
            if digest is None:
                fetched, digest = self.download(url, name, archive, info.size, info.etag)
            report, again, digest = self._extract_or_refetch(url, name, archive, digest)
            self._record_extracted(url, name, digest, report)
            if not self.keep_archives:
                archive.unlink(missing_ok=True)
            return PartOutcome(name, "extracted", fetched + again, report.written, tuple(report.refused))
        except (DownloadError, ArchiveError, OutputError) as e:
            return PartOutcome(name, "failed", error=str(e))

    def run(self, urls: list[str]) -> list[PartOutcome]:
        """`work` on every URL, `connections` at a time; failures are shown as they come."""
        results: list[PartOutcome] = []
        pool = ThreadPoolExecutor(max_workers=self.connections)
        try:
            futures: set[Future] = {pool.submit(self.work, u) for u in urls}
            while futures:
                done, futures = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in done:
                    out = f.result()
                    results.append(out)
                    if out.status == "failed":
                        self.bar.write(f"FAILED {out.name}: {out.error}")
        except BaseException:
            self.stop.set()  # Ctrl-C: workers stop at their next chunk; .partial files stay for resume
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return results
