"""`kinetics-prep --help` and `import kinetics_prep` stay light (DESIGN rule 7): the parser is
built from option dataclasses that live in modules importing no codec or array library."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("cv2", "av", "numpy", "torch", "numba")

_CHECK = """
import sys
import contextlib, io
{body}
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print(",".join(heavy))
"""


def _heavy_after(body: str) -> str:
    code = _CHECK.format(body=body, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_help_imports_no_heavy_library() -> None:
    body = (
        "from kinetics_prep.cli import main\n"
        "for argv in (['--help'], ['resize', '--help'], ['extract-frames', '--help'], ['prepare', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
    )
    assert _heavy_after(body) == ""


def test_import_package_imports_no_heavy_library() -> None:
    assert _heavy_after("import kinetics_prep\nkinetics_prep.ResizeOptions, kinetics_prep.ConfigError") == ""


def test_a_command_builds_only_its_own_options() -> None:
    # Building every command's options costs more than extracting a short clip: `resize` must
    # not load pack's, preview's or extract-frames' option modules, yet `--help` lists them all.
    code = ("import contextlib, io, sys\nfrom kinetics_prep.cli import build_parser\n"
            "p = build_parser(['resize', 'src', 'out'])\n"
            "print(sorted(m for m in sys.modules if m.endswith(('pack_options', 'preview_options', 'frames_options'))))\n"
            "print('extract-frames' in p.format_help() and 'preview' in p.format_help())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["[]", "True"], out
