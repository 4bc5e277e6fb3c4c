"""Compile the Triton TV-L1 kernels for a GPU without one: registers and spills per kernel.

    python benchmarks/triton_compile_check.py                 # sm_90 (H100/H200), the engine's GPU defaults
    python benchmarks/triton_compile_check.py --arch 80 --tile 64x64 --steps 8 --num-warps 16

Triton's interpreter (how the tests run the kernels on a CPU) accepts code that the real compiler
refuses, and says nothing about registers. This script runs the real pipeline -- Triton IR, PTX,
then ptxas from triton's own wheel -- for a chosen GPU architecture, on any machine, and prints
each kernel's registers per thread and spill bytes in the configurations the engine launches on
CUDA (kinetics_prep/flow/triton_tvl1.py). Exit status: 0 compiled without spills, 1 a kernel
failed to compile or spills, 3 this triton has no ahead-of-time API this script knows (said so).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SKIPPED = 3
F32, I32 = "*fp32", "*i32"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability x10 (default 90: Hopper)")
    parser.add_argument("--tile", default="32x64", help="primal-dual tile HxW, halo included (default: the engine's)")
    parser.add_argument("--steps", type=int, default=6, help="steps per launch = halo (default: the engine's)")
    parser.add_argument("--num-warps", type=int, default=None, help="default: the engine's rule for the tile")
    parser.add_argument("--quick", action="store_true", help="only the kernels of OpenCV's default parameters")
    return parser.parse_args(argv)


def find_ptxas(ptx: str, arch: str) -> list[str] | None:
    """A ptxas from triton's wheel that accepts this PTX's version (triton carries two)."""
    import triton

    folder = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "probe.ptx"
        source.write_text(ptx)
        for name in ("ptxas-blackwell", "ptxas"):
            binary = folder / name
            if binary.exists():
                result = subprocess.run([str(binary), f"--gpu-name={arch}", str(source), "-o", str(Path(tmp) / "o")],
                                        capture_output=True, text=True)
                if result.returncode == 0:
                    return [str(binary)]
    return None


def ptxas_info(ptxas: list[str], ptx: str, arch: str) -> tuple[int, int]:
    """(registers per thread, spill store + load bytes) from `ptxas -v`."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "k.ptx"
        source.write_text(ptx)
        result = subprocess.run([*ptxas, "-v", f"--gpu-name={arch}", str(source), "-o", str(Path(tmp) / "k.cubin")],
                                capture_output=True, text=True, check=True)
    registers = int(re.search(r"Used (\d+) registers", result.stderr).group(1))
    spills = sum(int(v) for v in re.findall(r"(\d+) bytes spill (?:stores|loads)", result.stderr))
    return registers, spills


def kernels(args: argparse.Namespace) -> list[tuple[str, object, dict, dict, int]]:
    """(label, kernel, signature, constexprs, num_warps) as the engine launches them on CUDA."""
    from kinetics_prep.flow import triton_tvl1 as TT

    bh, bw = (int(v) for v in args.tile.lower().split("x"))
    warps = args.num_warps or max(4, min(16, (bh * bw) // 256))  # the engine's rule
    pd_signature = dict(
        src_ptr=F32, dst_ptr=F32, fixed_ptr=F32, status_ptr=I32, redo_ptr=I32, change_ptr=F32, scratch_ptr=F32,
        H="i32", W="i32", tiles_x="i32", n_tiles="i32", n_items="i32", n_steps="i32",
        l_t="fp32", theta="fp32", taut="fp32", gamma="fp32", grad_eps="fp32",
        K="constexpr", R="constexpr", BH="constexpr", BW="constexpr", REDO="constexpr", SLOTS="constexpr",
    )
    channels = (2,) if args.quick else (2, 3)
    out = []
    for k in channels:
        for redo in (False, True):
            constexprs = dict(K=k, R=args.steps, BH=bh, BW=bw, REDO=redo, SLOTS=32)
            out.append((f"primal_dual K={k}{' redo' if redo else ''} {bh}x{bw} R={args.steps}",
                        TT._primal_dual_kernel, pd_signature, constexprs, warps))
    warp_signature = dict(stack_ptr=F32, i0_ptr=F32, state_ptr=F32, fixed_ptr=F32, H="i32", W="i32",
                          scale_x="fp32", scale_y="fp32", half_x="fp32", half_y="fp32", K="constexpr", BLOCK="constexpr")
    out.append(("warp BLOCK=512", TT._warp_kernel, warp_signature, dict(K=2, BLOCK=512), 8))
    median_signature = dict(state_ptr=F32, out_ptr=F32, status_ptr=I32, H="i32", W="i32",
                            K="constexpr", SIZE="constexpr", BLOCK="constexpr")
    for size in (5,) if args.quick else (5, 3):
        out.append((f"median {size}x{size} BLOCK=256", TT._median_kernel, median_signature, dict(K=2, SIZE=size, BLOCK=256), 4))
    decide_signature = dict(status_ptr=I32, change_ptr=F32, redo_ptr=I32, counts_ptr=I32, n_steps="i32",
                            scaled_epsilon="fp32", SLOTS="constexpr")
    out.append(("decide", TT._decide_kernel, decide_signature, dict(SLOTS=32), 1))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("TRITON_INTERPRET=1 is set: the kernels would be interpreted, not compiled; unset it", file=sys.stderr)
        return 1
    try:
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError as e:
        print(f"skipped: triton's ahead-of-time API is not available ({e})")
        return SKIPPED
    target = GPUTarget("cuda", args.arch, 32)
    arch = f"sm_{args.arch}a" if args.arch >= 90 else f"sm_{args.arch}"
    print(f"triton {triton.__version__}, target {arch}")
    print(f"{'kernel':<40} {'warps':>5} {'registers':>9} {'spill bytes':>11}")
    failures, ptxas = 0, None
    for label, kernel, signature, constexprs, warps in kernels(args):
        try:
            compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs),
                                      target=target, options={"num_warps": warps})
        except TypeError as e:  # an older ASTSource signature
            print(f"skipped: this triton's ASTSource differs ({e})")
            return SKIPPED
        except Exception as e:  # a kernel the real compiler refuses: the point of this script
            print(f"{label:<40} {warps:>5} COMPILE ERROR {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            failures += 1
            continue
        ptx = compiled.asm["ptx"]
        ptxas = ptxas or find_ptxas(ptx, arch)
        if ptxas is None:
            print(f"{label:<40} {warps:>5} compiled (no ptxas here accepts this PTX: registers unknown)")
            continue
        registers, spills = ptxas_info(ptxas, ptx, arch)
        failures += spills > 0
        print(f"{label:<40} {warps:>5} {registers:>9} {spills:>11}{'  SPILLS' if spills else ''}")
    print("ok: every kernel compiled without spills" if not failures else f"{failures} kernel(s) failed or spill")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
