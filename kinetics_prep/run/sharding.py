"""Stable sharding of a stage's items over N independent jobs (`--shard K/N`, SLURM arrays).

An item belongs to shard `1 + blake2b(clip name) mod N`. The clip name is the last component of
the item's key without its extension (`"air_drumming/abc_000001_000011.mp4"` ->
`"abc_000001_000011"`), so the same clip lands in the same shard in every stage (resize and
extract-frames of shard 3 touch the same clips) and whatever the class folder is called. The hash
is `hashlib.blake2b`, never Python's `hash()` (randomised per process), so N jobs started
anywhere agree, and every clip is in exactly one shard.

Shards are numbered 1..N. Inside a SLURM job array the shard comes from the environment:
K = (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP + 1,
N = SLURM_ARRAY_TASK_COUNT; an explicit `--shard` wins.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..errors import ConfigError

_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
SHARD_FILE_RE = re.compile(r"^(?P<base>.+)\.shard-(?P<index>\d+)-of-(?P<count>\d+)(?P<ext>\.[^.]+)$")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based)."""

    index: int
    count: int
    source: str = "--shard"  # where it came from: "--shard" or "SLURM"

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"shard count must be >= 1, got {self.count}")
        if not 1 <= self.index <= self.count:
            raise ConfigError(f"shard index must be within 1..{self.count}, got {self.index}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def tag(self) -> str:
        """`shard-K-of-N`, used in report file names."""
        return f"shard-{self.index}-of-{self.count}"

    def contains(self, key: str) -> bool:
        return shard_of(key, self.count) == self.index


def clip_name_of(key: str) -> str:
    """The part of an item key that names the clip: last path component without extension."""
    name = key.rstrip("/").rsplit("/", 1)[-1]
    stem, dot, _ext = name.rpartition(".")
    return stem if dot and stem else name


def shard_of(key: str, count: int) -> int:
    """The shard (1..count) of an item key: 1 + blake2b(clip name) mod count."""
    digest = hashlib.blake2b(clip_name_of(key).encode("utf-8"), digest_size=8).digest()
    return 1 + int.from_bytes(digest, "big") % count


def parse_shard(text: str | Shard) -> Shard:
    """`"2/8"` -> Shard(2, 8); a ConfigError for anything else."""
    if isinstance(text, Shard):
        return text
    m = _SHARD_RE.match(str(text))
    if not m:
        raise ConfigError(f"--shard must look like K/N with 1 <= K <= N (e.g. 1/4), got {text!r}")
    return Shard(int(m.group(1)), int(m.group(2)))


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard | None:
    """The shard of this SLURM array task, or None outside an array job."""
    env = os.environ if env is None else env
    task_id = env.get("SLURM_ARRAY_TASK_ID")
    count = env.get("SLURM_ARRAY_TASK_COUNT")
    if task_id is None or count is None:
        return None
    try:
        tid, n = int(task_id), int(count)
        lo = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        step = int(env.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
    except ValueError as e:
        raise ConfigError(f"cannot read the SLURM array variables: {e}") from e
    offset = tid - lo
    if step < 1 or offset < 0 or offset % step or offset // step >= n:
        raise ConfigError(
            f"SLURM array task {tid} (min {lo}, step {step}, count {n}) does not map to a shard 1..{n} "
            "(an array given as a list, e.g. --array=1,5,9?): pass --shard K/N explicitly")
    return Shard(offset // step + 1, n, source="SLURM")


def resolve_shard(explicit: str | Shard | None, env: Mapping[str, str] | None = None) -> Shard | None:
    """The explicit shard if given, else the SLURM array's, else None. `1/1` means no sharding."""
    shard = parse_shard(explicit) if explicit is not None else shard_from_env(env)
    if shard is not None and shard.count == 1:
        return None
    return shard


def sharded_path(path: str | os.PathLike, shard: Shard | None) -> Path:
    """`resize_report.jsonl` -> `resize_report.shard-2-of-8.jsonl` (unchanged without a shard)."""
    path = Path(path)
    if shard is None:
        return path
    return path.with_name(f"{path.stem}.{shard.tag}{path.suffix}")
