"""Exact k x k median filter on tensors as straight-line min/max code (k = 3 or 5).

Sorting-based medians (torch.median over unfolded windows) are slow and memory hungry; a
selection network is only elementwise minimum/maximum, which a GPU (and torch.compile) runs at
memory speed. The network is derived, not hand-written:

1. each k-pixel column of the padded image is sorted once (the sorted columns are shared by the
   k windows that contain them);
2. a Batcher odd-even merge sort over 8-wire blocks (one sorted column per block, padded with
   -inf/+inf constants) is simulated symbolically: comparators whose outcome is already implied
   by known orderings or constants cost nothing, and everything not feeding the median output is
   pruned. For k = 5 that leaves 130 min/max per pixel (plus 18 for the column sorts).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

# A program is a list of (destination, is_max, a, b) on numbered registers; inputs are registers
# 0..n_inputs-1 and every op writes a new register.
Op = tuple[int, bool, int, int]
_LOW, _HIGH = -1, -2  # symbolic -inf / +inf padding


def _batcher_comparators(n: int) -> list[tuple[int, int]]:
    """Comparators (i, j), i < j (min to i), of Batcher's odd-even merge sort; n a power of 2."""
    comparators = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        comparators.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return comparators


class _Order:
    """Known `a <= b` facts among registers, closed under transitivity."""

    def __init__(self) -> None:
        self.below: dict[int, set[int]] = {}
        self.above: dict[int, set[int]] = {}

    def add(self, register: int) -> None:
        self.below[register] = {register}
        self.above[register] = {register}

    def relate(self, a: int, b: int) -> None:
        for low in list(self.below[a]):
            for high in list(self.above[b]):
                self.above[low].add(high)
                self.below[high].add(low)

    def known_le(self, a: int, b: int) -> bool:
        return b in self.above[a]


def _compile(wires: list[int], n_inputs: int, chains: Sequence[Sequence[int]], outputs: Sequence[int]) -> tuple[list[Op], list[int]]:
    """Simulate a sorting network over `wires`, return the pruned program and output registers."""
    order = _Order()
    for register in range(n_inputs):
        order.add(register)
    for chain in chains:
        for a, b in zip(chain, chain[1:]):
            order.relate(a, b)
    ops: list[Op] = []
    next_register = n_inputs
    for i, j in _batcher_comparators(len(wires)):
        a, b = wires[i], wires[j]
        if a == _LOW or b == _HIGH or (a >= 0 and b >= 0 and order.known_le(a, b)):
            continue
        if b == _LOW or a == _HIGH or order.known_le(b, a):
            wires[i], wires[j] = b, a
            continue
        low, high = next_register, next_register + 1
        next_register += 2
        ops += [(low, False, a, b), (high, True, a, b)]
        order.add(low)
        order.add(high)
        for x, y in ((low, a), (low, b), (a, high), (b, high)):
            order.relate(x, y)
        for x in order.below[a] & order.below[b]:
            order.relate(x, low)
        for y in order.above[a] & order.above[b]:
            order.relate(high, y)
        wires[i], wires[j] = low, high
    targets = [wires[k] for k in outputs]
    return _prune(ops, targets), targets


def _prune(ops: list[Op], targets: Sequence[int]) -> list[Op]:
    needed = set(targets)
    kept = []
    for op in reversed(ops):
        if op[0] in needed:
            kept.append(op)
            needed.update(op[2:])
    return kept[::-1]


@functools.lru_cache(maxsize=None)
def column_sort_program(k: int) -> tuple[list[Op], list[int]]:
    """Sort k registers: program and the registers holding ranks 0..k-1."""
    wires = list(range(k)) + [_HIGH] * (8 - k)
    return _compile(wires, k, [], list(range(k)))


@functools.lru_cache(maxsize=None)
def median_program(k: int) -> tuple[list[Op], int]:
    """Median of k sorted columns; input register c * k + r = rank r of column c."""
    block = 8 if k > 4 else 4  # one sorted column (+inf padded) per block
    n_inputs = k * k
    n_wires = block * (1 << (k - 1).bit_length())  # room for k blocks, a power of two
    lows = (n_wires - n_inputs) // 2  # the median of the real values sits at wire lows + n_inputs // 2
    wires: list[int] = []
    for c in range(k):
        wires += [c * k + r for r in range(k)] + [_HIGH] * (block - k)
    rest = n_wires - len(wires)
    if lows > rest:
        raise AssertionError(f"no room for {lows} -inf wires in a {k}x{k} median network")
    wires += [_LOW] * lows + [_HIGH] * (rest - lows)
    chains = [[c * k + r for r in range(k)] for c in range(k)]
    ops, (target,) = _compile(wires, n_inputs, chains, [lows + n_inputs // 2])
    return ops, target


def _run(ops: list[Op], registers: dict[int, torch.Tensor], keep: set[int]) -> None:
    last_use: dict[int, int] = {}
    for index, (_, _, a, b) in enumerate(ops):
        last_use[a] = last_use[b] = index
    for index, (dst, is_max, a, b) in enumerate(ops):
        registers[dst] = torch.maximum(registers[a], registers[b]) if is_max else torch.minimum(registers[a], registers[b])
        for src in (a, b):  # free early: bounded memory in eager mode
            if last_use[src] == index and src not in keep:
                registers.pop(src, None)


MedianFilter = Callable[[torch.Tensor], torch.Tensor]


@functools.lru_cache(maxsize=None)
def make_median_filter(size: int) -> MedianFilter:
    """A size x size median of each channel of (..., H, W), border replicated (cv::medianBlur).

    The network is generated here, once; the returned function only replays it, so
    torch.compile traces straight-line min/max code rather than the generator.
    """
    if size not in (3, 5):
        raise ValueError(f"median size must be 3 or 5, got {size}")
    col_ops, col_ranks = column_sort_program(size)
    med_ops, target = median_program(size)
    r = size // 2

    def median(u: torch.Tensor) -> torch.Tensor:
        h, w = u.shape[-2:]
        padded = F.pad(u, (r, r, r, r), mode="replicate")
        # 1. sort every vertical run of `size` pixels: (..., H, W + 2r) tensors by rank.
        cols = {i: padded[..., i : i + h, :] for i in range(size)}
        _run(col_ops, cols, set(col_ranks))
        ranks = [cols[reg] for reg in col_ranks]
        # 2. median of the `size` sorted columns of each window.
        regs = {c * size + k: ranks[k][..., c : c + w] for c in range(size) for k in range(size)}
        _run(med_ops, regs, {target})
        return regs[target]

    return median


def median_filter(u: torch.Tensor, size: int) -> torch.Tensor:
    """size x size median of each channel of (..., H, W), border replicated (cv::medianBlur)."""
    return make_median_filter(size)(u)


# --- Triton source ----------------------------------------------------------------------------
# Triton compiles a function's source text, so the same networks are written out as straight-line
# code once, into _median_triton.py (committed, so importing it needs no generator at run time;
# tests/test_flow_triton.py checks it is what this function writes).

TRITON_MODULE = "_median_triton.py"


def triton_source(sizes: Sequence[int] = (3, 5)) -> str:
    """Source of a module with one @triton.jit `median{k}_at(plane, row, col, H, W, mask)` per size:
    the k x k median around (row, col) of an (H, W) plane, border replicated (cv::medianBlur).

    Straight-line code (Triton kernels cannot hold lists of values): k*k clamped loads, the
    column sorts, then the pruned merge network of _median.py.
    """
    lines = [
        "# Generated by kinetics_prep.flow._median.triton_source(): do not edit. Regenerate with",
        f"#   python -m kinetics_prep.flow._median > kinetics_prep/flow/{TRITON_MODULE}",
        '"""Exact 3x3 and 5x5 medians as min/max networks in registers (see _median.py)."""',
        "",
        "import triton",
        "import triton.language as tl",
    ]
    for k in sizes:
        col_ops, col_ranks = column_sort_program(k)
        med_ops, target = median_program(k)
        half = k // 2
        lines += ["", "", "@triton.jit", f"def median{k}_at(plane, row, col, H, W, mask):"]
        for i in range(k):
            lines.append(f"    y{i} = tl.minimum(tl.maximum({_offset('row', i - half)}, 0), H - 1) * W")
        for i in range(k):
            lines.append(f"    x{i} = tl.minimum(tl.maximum({_offset('col', i - half)}, 0), W - 1)")
        median_inputs: dict[int, str] = {}
        for c in range(k):
            # Input register r of column c is the pixel at row offset r - half, column offset c - half.
            names = {r: f"v{c * k + r}" for r in range(k)}
            for r in range(k):
                lines.append(f"    v{c * k + r} = tl.load(plane + y{r} + x{c}, mask=mask, other=0.0)")
            for dst, is_max, a, b in col_ops:
                names[dst] = f"c{c}_{dst}"
                lines.append(f"    {names[dst]} = tl.{'maximum' if is_max else 'minimum'}({names[a]}, {names[b]})")
            for rank, register in enumerate(col_ranks):
                median_inputs[c * k + rank] = names[register]
        names = dict(median_inputs)
        for dst, is_max, a, b in med_ops:
            names[dst] = f"m{dst}"
            lines.append(f"    {names[dst]} = tl.{'maximum' if is_max else 'minimum'}({names[a]}, {names[b]})")
        lines.append(f"    return {names[target]}")
    return "\n".join(lines) + "\n"


def _offset(name: str, delta: int) -> str:
    return name if delta == 0 else f"{name} {'+' if delta > 0 else '-'} {abs(delta)}"


# --- numba source -----------------------------------------------------------------------------
# Numba caches compiled functions by their source file, so the networks are written out once
# into _median_numba.py (committed; tests/test_flow_numba.py checks it is what this writes).

NUMBA_MODULE = "_median_numba.py"


def numba_source(sizes: Sequence[int] = (3, 5)) -> str:
    """Source of a module with one numba `median{k}_row(src, dst, y, c0, ..)` per size: row y of
    the k x k median of the float32 plane `src` into `dst`, border replicated (cv::medianBlur).

    c0..c{k-1} are scratch rows of width W + k - 1: first every column of k pixels is sorted
    once (rank r into c{r}), then each window merges its k sorted columns with the pruned network
    above. Straight-line min/max as conditional selects, which LLVM turns into vector min/max.
    """
    lines = [
        "# Generated by kinetics_prep.flow._median.numba_source(): do not edit. Regenerate with",
        f"#   python -m kinetics_prep.flow._median numba > kinetics_prep/flow/{NUMBA_MODULE}",
        '"""Exact 3x3 and 5x5 medians as min/max networks, one output row per call (see _median.py)."""',
        "",
        "from ._numba_jit import jit",
    ]
    for k in sizes:
        lines += ["", ""] + _numba_median_row(k)
    return "\n".join(lines) + "\n"


def _numba_median_row(k: int) -> list[str]:
    col_ops, col_ranks = column_sort_program(k)
    med_ops, target = median_program(k)
    half = k // 2
    scratch = ", ".join(f"c{r}" for r in range(k))
    lines = ["@jit", f"def median{k}_row(src, dst, y, {scratch}):", "    h, w = src.shape"]
    for r in range(k):
        row = _offset("y", r - half)
        clamp = f"max({row}, 0)" if r < half else f"min({row}, h - 1)" if r > half else row
        lines.append(f"    r{r} = src[{clamp}]")
    lines.append("    for x in range(w):")
    names = {r: f"v{r}" for r in range(k)}
    lines += [f"        v{r} = r{r}[x]" for r in range(k)]
    for dst, is_max, a, b in col_ops:
        names[dst] = f"s{dst}"
        lines.append(f"        s{dst} = {_select(names[a], names[b], is_max)}")
    lines += [f"        c{rank}[x + {half}] = {names[register]}" for rank, register in enumerate(col_ranks)]
    # Replicated border: the columns left and right of the image are copies of the edge columns.
    lines.append(f"    for x in range({half}):")
    for r in range(k):
        lines.append(f"        c{r}[x] = c{r}[{half}]")
        lines.append(f"        c{r}[w + {half} + x] = c{r}[w + {half - 1}]")
    lines += ["    out = dst[y]", "    for x in range(w):"]
    names = {}
    for c in range(k):
        for r in range(k):
            names[c * k + r] = f"i{c * k + r}"
            lines.append(f"        i{c * k + r} = c{r}[{_offset('x', c)}]")
    for dst, is_max, a, b in med_ops:
        names[dst] = f"m{dst}"
        lines.append(f"        m{dst} = {_select(names[a], names[b], is_max)}")
    lines.append(f"        out[x] = {names[target]}")
    return lines


def _select(a: str, b: str, is_max: bool) -> str:
    return f"{a} if {a} {'>' if is_max else '<'} {b} else {b}"


if __name__ == "__main__":
    import sys

    print(numba_source() if sys.argv[1:] == ["numba"] else triton_source(), end="")
