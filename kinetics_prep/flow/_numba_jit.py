"""Numba settings shared by the numba TV-L1 kernels: one writable cache directory, one set of
compile options. Import this module before anything else that imports numba.

Compiled kernels are cached on disk (``cache=True``), so only the first process on a machine pays
for compiling; the cache goes to a per-user directory, never next to the installed sources (which
may be read-only): ``$KINETICS_PREP_NUMBA_CACHE``, else ``$NUMBA_CACHE_DIR`` when the user set it,
else ``$XDG_CACHE_HOME/kinetics_prep/numba`` (``~/.cache/kinetics_prep/numba``).
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

CACHE_ENV = "KINETICS_PREP_NUMBA_CACHE"

# error_model="numpy": no zero-division checks, which would block vectorisation (a division by
# zero gives inf, as in C). fastmath: reassociation (vectorised sums) and no signed zeros; no
# "arcp" or "afn", so divisions and sqrt stay exact. No "contract" either: with it LLVM fused
# multiply-adds differently when compiling in memory and when writing the cache, so a process
# that compiled gave other bytes (1e-7 px) than one that loaded the cache.
FASTMATH = frozenset({"reassoc", "nsz"})


def cache_dir() -> Path:
    """The directory compiled kernels are cached in (created; a temporary one if that fails)."""
    given = os.environ.get(CACHE_ENV) or os.environ.get("NUMBA_CACHE_DIR")
    if given:
        path = Path(given).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = Path(base) / "kinetics_prep" / "numba"
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    # An unwritable home (some cluster nodes): still cache, per user, for this machine.
    fallback = Path(tempfile.gettempdir()) / f"kinetics_prep-numba-{os.getuid()}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


CACHE_DIR = cache_dir()
# Numba reads NUMBA_CACHE_DIR when it is first imported; the environment also reaches spawned
# workers. If numba was imported before us, its config is set directly (read when a kernel is
# decorated, which happens below, after this).
os.environ["NUMBA_CACHE_DIR"] = str(CACHE_DIR)

import numba  # noqa: E402

numba.config.CACHE_DIR = str(CACHE_DIR)

jit = functools.partial(numba.njit, cache=True, error_model="numpy", fastmath=set(FASTMATH))
jit_parallel = functools.partial(jit, parallel=True)
