"""The only code that talks to codecs (PyAV with its bundled FFmpeg; OpenCV for still images),
split by job:

- `read`: `probe` -> VideoInfo (displayed size, fps, codec, frame count),
  `iter_frames` (upright, resized BGR/gray frames from one decode, with the clip's fps),
  `iter_pictures` (the same as `Picture`s: full-range YUV 4:2:0 planes for JPEG), `count_frames`,
  `keyframe_indices`; all readers take `fps=F` for frames at a constant rate;
- `rate`: FFmpeg's `fps=F` frame choice (`output_rate`, `Clock`, `Ticks`, `resample`), pure arithmetic;
- `encode`: `reencode` (the resize stage's H.264 with dense keyframes), `write_frames`;
- `trim`: cut a [start, end) segment (YouTube acquisition);
- `check`: `check_decodable` (verify, doctor), `check_image_data` (strict JPEG/PNG decode);
- `images`: JPEG/PNG encode and decode of frame files (planar YUV and gray JPEG via libjpeg-turbo);
- `geometry`: `output_size`, the resize rule.

Every codec failure is re-raised as a typed error naming the file.
"""

from ._core import open_video
from .check import DecodeCheck, check_decodable, check_image_data
from .encode import EncodeResult, has_h264_encoder, reencode, write_frames
from .geometry import output_size
from .read import (
    Frames,
    Picture,
    VideoInfo,
    count_frames,
    iter_frames,
    iter_pictures,
    keyframe_indices,
    library_versions,
    probe,
)
from .trim import TRIM_MODES, TrimResult, trim

__all__ = [
    "DecodeCheck", "EncodeResult", "Frames", "TRIM_MODES", "TrimResult", "VideoInfo", "Picture",
    "check_decodable", "check_image_data", "count_frames", "has_h264_encoder", "iter_frames",
    "iter_pictures", "keyframe_indices",
    "library_versions", "open_video", "output_size", "probe", "reencode", "trim", "write_frames",
]
