"""Option plumbing shared by the public functions: every stage takes either its frozen options
dataclass or the same fields as keyword arguments, and unknown names are a ConfigError."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence, TypeVar, Union

from .errors import ConfigError

PathLike = Union[str, "os.PathLike[str]"]

_O = TypeVar("_O")


def path_tuple(paths: PathLike | Sequence[PathLike]) -> tuple[Path, ...]:
    """One path or several -> a tuple of Paths."""
    if isinstance(paths, (str, os.PathLike)):
        return (Path(paths),)
    return tuple(Path(p) for p in paths)


def make_options(cls: type[_O], given: _O | None = None, /, **kwargs: Any) -> _O:
    """`given` itself (when an options object is passed), else `cls(**kwargs)`; unknown keyword
    names are a ConfigError, not a TypeError."""
    if isinstance(given, cls):
        extra = {k: v for k, v in kwargs.items() if v is not None}
        if extra:
            raise ConfigError(f"pass either a {cls.__name__} or keyword options, not both: {sorted(extra)}")
        return given
    known = {f.name for f in fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = set(kwargs) - known
    if unknown:
        raise ConfigError(f"unknown option(s) {sorted(unknown)}; known: {sorted(known)}")
    return cls(**kwargs)


