"""Option plumbing shared by the public functions: every stage takes either its frozen options
dataclass or the same fields as keyword arguments, and unknown names are a ConfigError. Fields
made with `opt(...)` also carry their command-line spelling and help, from which `cli.py`
generates its arguments (`add_arguments`, `options_from`)."""

from __future__ import annotations

import argparse
import inspect
import os
import re
import types
import typing
from dataclasses import MISSING, Field, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar, Union

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


# A "rate" of 1000 or more is a slip (a period in ms, an extra digit): no camera or model wants it.
MAX_FPS = 1000.0


def check_fps(fps: Any) -> float | None:
    """--fps as a float, or ConfigError: a positive rate below MAX_FPS (frames per second)."""
    if fps is None:
        return None
    try:
        value = float(fps) if not isinstance(fps, bool) else float("nan")
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.001 <= value < MAX_FPS:  # also false for NaN
        raise ConfigError(f"--fps must be a frame rate from 0.001 to below {MAX_FPS:g} frames per second "
                          f"(e.g. 25), got {fps!r}")
    return value


# ------------------------------------------------------------------ checking plain values
# A config file (TOML) or a keyword gives plain values; what an option accepts is derived once,
# here, from its field: the resolved annotation and the `opt()` metadata (choices, switches).

_PLAIN: dict[Any, tuple[type, ...]] = {
    bool: (bool,), int: (int,), float: (int, float), str: (str,), Path: (str,), os.PathLike: (str,),
    type(None): (type(None),),
}


def accepted_types(annotation: Any, default: Any = MISSING) -> tuple[type, ...] | None:
    """The plain types an option's value may have, from its resolved annotation (a union of
    bool, int, float, str, Path, None: a path is given as text) or, without one, its default;
    None when the annotation is anything else (a tuple, a frozenset: not checked here)."""
    if annotation is None:
        for t in (bool, int, float, str):  # bool first: it is an int to isinstance
            if isinstance(default, t):
                return _PLAIN[t]
        return None
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    out: list[type] = []
    for a in args:
        plain = _PLAIN.get(typing.get_origin(a) or a)  # os.PathLike[str] -> os.PathLike
        if plain is None:
            return None
        out.extend(plain)
    return tuple(dict.fromkeys(out))


def option_types(cls: type) -> dict[str, tuple[type, ...] | None]:
    """`accepted_types` of every field of an options dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: accepted_types(hints.get(f.name), f.default) for f in fields(cls)}  # type: ignore[arg-type]


def parameter_types(fn: Callable[..., Any]) -> dict[str, tuple[type, ...] | None]:
    """`accepted_types` of a function's keyword-only parameters (a public function's options)."""
    hints = typing.get_type_hints(fn)
    params = inspect.signature(fn).parameters.values()
    return {p.name: accepted_types(hints.get(p.name), p.default) for p in params if p.kind is p.KEYWORD_ONLY}


def option_choices(cls: type) -> dict[str, tuple[Any, ...]]:
    """The allowed values of every field that has them: `opt(choices=...)`, or the values its
    `switches` store."""
    out = {}
    for f in fields(cls):  # type: ignore[arg-type]
        choices = f.metadata.get("choices")
        if choices is None and f.metadata.get("switches"):
            choices = [value for value, _ in f.metadata["switches"].values()]
        if choices is not None:
            out[f.name] = tuple(choices)
    return out


def check_type(what: str, value: Any, want: type | tuple[type, ...]) -> None:
    """ConfigError unless `value` is of `want` (`workers = true` is not an int: bool never passes
    for a number)."""
    want = want if isinstance(want, tuple) else (want,)
    if not isinstance(value, want) or (isinstance(value, bool) and bool not in want):
        names = " or ".join("none" if t is type(None) else t.__name__ for t in want)
        raise ConfigError(f"{what} must be {names}, got {type(value).__name__} {value!r}")


def check_choice(what: str, value: Any, allowed: Sequence[Any]) -> None:
    """ConfigError unless `value` (or each of a list of values) is one of `allowed` (None passes:
    the option's default)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    bad = [v for v in values if v is not None and v not in allowed]
    if bad:
        raise ConfigError(f"{what}: {bad[0]!r} is not one of {', '.join(map(str, allowed))}")


# ------------------------------------------------------------------ the command line, from the fields
# A field's metadata says how it looks on the command line; `add_arguments` turns the fields of an
# options dataclass into argparse arguments, so a default, a choice list or a help text is written
# once, beside the field, and the CLI and the API cannot drift apart. This module imports nothing
# heavy: option classes are imported to build `--help`.

_NOT_ON_CLI = "not on the command line"


def opt(
    default: Any = MISSING,
    *,
    help: str | None = None,
    choices: Sequence[Any] | None = None,
    metavar: str | None = None,
    flag: str | Sequence[str] | None = None,
    type: Callable[[str], Any] | None = None,
    group: str | None = None,
    default_factory: Callable[[], Any] | Any = MISSING,
    cli: bool = True,
    also: Mapping[str, Mapping[str, Any]] | None = None,
    switches: Mapping[str, tuple[Any, str]] | None = None,
    rank: int = 0,
    **argparse_kwargs: Any,
) -> Any:
    """A dataclass field whose metadata describes its command-line argument.

    flag: the spelling (default `--field-name`); a name without dashes makes a positional
    argument; a `--no-...` flag on a field that defaults to True stores False. type: how the
    text is parsed (default: int/float from the annotation, else the text itself). group: the
    argparse argument group's title. cli=False keeps the field off the command line.
    switches: {flag: (value, help)}, mutually exclusive flags that each store their value
    (`--copy` -> mode="copy") instead of one flag taking a value. rank: where the argument is
    listed (fields sort by rank, then declaration order), so a field that must come early in the
    dataclass (a positional constructor argument) can come late in `--help`. Other keyword
    arguments (nargs, action, dest, required, ...) go to `add_argument` unchanged.
    """
    meta = {"help": help, "choices": choices, "metavar": metavar, "flag": flag, "type": type,
            "group": group, "cli": cli, "also": dict(also or {}), "switches": dict(switches or {}),
            "rank": rank, "argparse": argparse_kwargs}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def _parse_type(annotation: Any) -> Callable[[str], Any] | None:
    """int or float from a field's annotation (a string under `from __future__ import annotations`)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    words = set(re.findall(r"[A-Za-z_]+", text)) - {"None", "Optional"}
    if words == {"int"}:
        return int
    if words == {"float"}:
        return float
    return None


def cli_fields(cls: type) -> list[Field]:
    """The fields of `cls` that appear on the command line, by rank, then declaration order."""
    shown = [f for f in fields(cls) if f.metadata.get("cli", True)]  # type: ignore[arg-type]
    return sorted(shown, key=lambda f: f.metadata.get("rank", 0))


def add_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    skip: Sequence[str] = (),
    groups: Mapping[str, Any] | None = None,
) -> None:
    """Add one argument per field of the options dataclass `cls` to `parser` (fields named in
    `skip`, or with cli=False, are left out). Fields with a `group` go into that argument group,
    created on first use (or taken from `groups`, which is updated)."""
    made: dict[str, Any] = dict(groups or {})
    for f in cli_fields(cls):
        if f.name in skip:
            continue
        meta = f.metadata
        title = meta.get("group")
        target: Any = parser
        if title:
            if title not in made:
                made[title] = parser.add_argument_group(title)
            target = made[title]
        _add_field(target, f)
        for alias, kwargs in (meta.get("also") or {}).items():
            target.add_argument(alias, dest=f.name, **kwargs)
    if isinstance(groups, dict):
        groups.update(made)


def _default(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None  # type: ignore[misc]


def _add_switches(target: Any, f: Field) -> None:
    group = target.add_mutually_exclusive_group()
    for flag, (value, text) in f.metadata["switches"].items():
        group.add_argument(flag, dest=f.name, action="store_const", const=value, default=_default(f), help=text)


def _add_field(target: Any, f: Field) -> None:
    meta = f.metadata
    if meta.get("switches"):
        _add_switches(target, f)
        return
    extra = dict(meta.get("argparse") or {})
    flag = meta.get("flag") or "--" + f.name.replace("_", "-")
    flags = [flag] if isinstance(flag, str) else list(flag)
    default = _default(f)
    if extra.get("action") == "append" and isinstance(default, tuple):
        default = list(default)  # argparse appends to (a copy of) the default: a tuple cannot grow
    kw: dict[str, Any] = {}
    if meta.get("help") is not None:
        kw["help"] = meta["help"]
    positional = not flags[0].startswith("-")
    if positional:
        # argparse names a positional by its dest; the field's name keeps the Namespace the API's.
        kw["metavar"] = meta.get("metavar") or flags[0]
        flags = [f.name]
    else:
        kw["dest"] = f.name
    if not positional and isinstance(default, bool) and "action" not in extra:
        if default is False:
            kw["action"] = "store_true"
        elif flags[0].startswith("--no-"):
            kw["action"] = "store_false"
        else:
            kw["action"] = argparse.BooleanOptionalAction
            kw["default"] = True
        target.add_argument(*flags, **kw, **extra)
        return
    if not positional:
        kw["default"] = default
    parse = meta.get("type") or _parse_type(f.type)
    if parse is not None and extra.get("action") not in ("store_true", "store_false", "store_const"):
        kw["type"] = parse
    if meta.get("choices") is not None:
        kw["choices"] = tuple(meta["choices"])
    if meta.get("metavar") is not None and not positional:
        kw["metavar"] = meta["metavar"]
    kw.update(extra)
    target.add_argument(*flags, **kw)


def options_from(cls: type, namespace: argparse.Namespace, *, skip: Sequence[str] = ()) -> dict[str, Any]:
    """The values parsed for the command-line fields of `cls`, as keyword arguments."""
    return {f.name: getattr(namespace, f.name) for f in cli_fields(cls)
            if f.name not in skip and hasattr(namespace, f.name)}
