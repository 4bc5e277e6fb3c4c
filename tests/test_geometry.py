"""The resize geometry: one function, a table of cases."""

import pytest

from kinetics_prep.errors import ConfigError
from kinetics_prep.video import output_size


@pytest.mark.parametrize(
    "size, short, upscale, expected",
    [
        ((340, 256), 256, True, (340, 256)),  # already the target
        ((1280, 720), 256, True, (456, 256)),  # 455.1 -> nearest even 456
        ((720, 1280), 256, True, (256, 456)),  # portrait stays portrait
        ((426, 240), 256, True, (454, 256)),  # 454.4 -> 454
        ((320, 240), 256, True, (342, 256)),  # 341.3 -> 342 (upscaled)
        ((175, 131), 256, True, (342, 256)),  # odd source: 341.98 -> 342
        ((568, 320), 320, True, (568, 320)),
        ((320, 568), 256, True, (256, 454)),  # rotated phone clip, displayed portrait
        ((256, 256), 128, True, (128, 128)),  # square
        ((320, 240), 256, False, (320, 240)),  # --no-upscale keeps a small clip
        ((175, 131), 256, False, (174, 130)),  # ...trimming odd edges instead of upscaling
        ((1280, 720), 256, False, (456, 256)),  # --no-upscale still downscales
        ((1279, 719), None, True, (1278, 718)),  # no resize: only made even
    ],
)
def test_output_size_table(size, short, upscale, expected):
    assert output_size(*size, short, allow_upscale=upscale) == expected


def test_output_size_keeps_aspect_within_rounding():
    for w, h in [(1920, 1080), (640, 360), (480, 272), (1080, 1920), (300, 999)]:
        ow, oh = output_size(w, h, 256)
        assert min(ow, oh) == 256 and ow % 2 == 0 and oh % 2 == 0
        assert abs(ow / oh - w / h) < 2.0 / 256


@pytest.mark.parametrize("args", [(0, 10, 256), (10, -1, 256), (100, 100, 1)])
def test_output_size_rejects_nonsense(args):
    with pytest.raises(ConfigError):
        output_size(*args)
