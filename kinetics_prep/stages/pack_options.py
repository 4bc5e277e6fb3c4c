"""`PackOptions` (pack: zip per clip or one LMDB) and `UnpackOptions` (unpack), validated before
any work starts, so the command line and the API refuse the same combinations.

Kept apart from `pack.py` (which imports the runner and its progress bars) so `--help` reads the
fields, their defaults and help texts without importing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..options import opt

PACK_TARGETS = ("zip", "lmdb")


@dataclass(frozen=True)
class PackOptions:
    src: Path = opt(flag="src", metavar="SRC", help="a rawframes root, e.g. data/kinetics400/rawframes_train")
    # None: zip in place (OUT = SRC); lmdb has no such default (the database is not a tree of clips)
    out: Path | None = opt(None, flag="out", metavar="OUT", nargs="?",
                           help="zip: output root (default: SRC, in place); lmdb: the database directory (required)")
    to: str = opt("zip", choices=PACK_TARGETS, help="zip per clip (default) or one LMDB")
    level: int = opt(2, choices=(1, 2), help="2: SRC/class/clip (default); 1: SRC/clip")
    # remove each source only after its packed copy is verified
    delete_source: bool = opt(False, help="zip: delete each frame directory once its archive is verified")
    key_prefix: str = opt("", metavar="P",
                          help="lmdb: prefix of every key, to match a RawframeDataset data_prefix=dict(img=P) "
                               "(default: '', keys relative to SRC)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "src", Path(self.src))
        if self.to not in PACK_TARGETS:
            raise ConfigError(f"--to must be one of {', '.join(PACK_TARGETS)}, got {self.to!r}")
        if self.to == "lmdb":
            if self.out is None:
                raise ConfigError("pack --to lmdb needs OUT, the database directory")
            if self.delete_source:
                raise ConfigError("--delete-source applies to --to zip")
        elif self.key_prefix:
            raise ConfigError("--key-prefix applies to --to lmdb")
        object.__setattr__(self, "out", Path(self.out) if self.out is not None else self.src)
        if self.level not in (1, 2):
            raise ConfigError(f"--level must be 1 or 2, got {self.level}")


@dataclass(frozen=True)
class UnpackOptions:
    src: Path = opt(flag="src", metavar="SRC", help="a root of packed clips")
    out: Path | None = opt(None, flag="out", metavar="OUT", nargs="?",  # None: beside the sources (in place)
                           help="output root (default: SRC, in place)")
    level: int = opt(2, choices=(1, 2), help="2: SRC/class/clip.zip (default); 1: SRC/clip.zip")
    # remove each source only after its unpacked copy is verified
    delete_source: bool = opt(False, help="delete each archive once its directory is verified")

    def __post_init__(self) -> None:
        object.__setattr__(self, "src", Path(self.src))
        object.__setattr__(self, "out", Path(self.out) if self.out is not None else self.src)
        if self.level not in (1, 2):
            raise ConfigError(f"--level must be 1 or 2, got {self.level}")
