"""The extract-frames pixel path: JPEGs from the decoder's YUV planes keep today's colours
(OpenCV's I420 -> BGR, BT.601) on every real clip, flow's Y-plane grayscale keeps TV-L1's
accuracy, and the readers open each clip once."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest
from conftest import require_shared, real_video
from flow_data import MIDDLEBURY

from kinetics_prep import video
from kinetics_prep.errors import DecodeError
from kinetics_prep.flow import get_engine
from kinetics_prep.flow.metrics import endpoint_error, read_flo
from kinetics_prep.video.synthetic import ClipSpec, write_clip
from kinetics_prep.video import images
from kinetics_prep.video.read import _to_picture


def _decode(data: bytes, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _real_clips() -> list[str]:
    folder = require_shared("videos")
    return sorted(p.name for p in folder.iterdir() if p.is_file())


@pytest.mark.slow
@pytest.mark.parametrize("short_edge", [256, None])
def test_planar_jpegs_match_todays_path_on_every_real_clip(short_edge):
    """New: planes resized -> limited-to-full LUT -> libjpeg-turbo planar encode. Today's path:
    I420 -> BGR (OpenCV) -> resize -> cv2.imencode. Both decoded by OpenCV, every frame."""
    checked = 0
    for name in _real_clips():
        path = real_video(name)
        old = video.iter_frames(path, short_edge=short_edge)
        new = video.iter_pictures(path, short_edge=short_edge)
        try:
            pairs = list(zip(old, new, strict=True))
        except DecodeError:
            # A broken bitstream fails both readers alike (decord_corrupted.mp4).
            with pytest.raises(DecodeError):
                list(video.iter_pictures(path, short_edge=short_edge))
            continue
        worst_mad, worst_psnr = 0.0, 99.0
        for bgr, picture in pairs:
            assert picture.planes is not None, f"{name}: 8-bit 4:2:0 should take the planar path"
            assert picture.shape == bgr.shape[:2]
            today = _decode(images.encode_image(bgr, ".jpg", images.encode_params("jpg", 95)))
            ours = _decode(images.encode_picture_jpeg(picture, 95))
            worst_mad = max(worst_mad, float(np.abs(ours.astype(np.int16) - today).mean()))
            worst_psnr = min(worst_psnr, _psnr(ours, today))
        print(f"{name} @ {short_edge}: {len(pairs)} frames, worst MAD {worst_mad:.3f}, worst PSNR {worst_psnr:.2f} dB")
        assert worst_mad <= 1.5 and worst_psnr >= 40.0, name
        checked += 1
    assert checked >= 5


def test_limited_to_full_range_matches_opencv_i420_to_bgr():
    """The LUTs turn JFIF's YCbCr -> RGB into OpenCV's BT.601 limited-range I420 -> BGR: check on
    every (Y, Cb, Cr) level without any JPEG in between (flat planes, so chroma upsampling plays
    no part)."""
    from kinetics_prep.video.read import _C_LUT, _Y_LUT

    ys, cs = np.arange(16, 236, 3), np.arange(16, 241, 7)
    yy, uu, vv = np.meshgrid(ys, cs, cs, indexing="ij")
    n = yy.size
    y = np.repeat(yy.reshape(n, 1), 2, axis=1).repeat(2, axis=0).astype(np.uint8)  # (2n, 2)
    u, v = uu.reshape(n, 1).astype(np.uint8), vv.reshape(n, 1).astype(np.uint8)
    opencv = cv2.cvtColor(np.concatenate([y, u.reshape(-1, 2), v.reshape(-1, 2)]), cv2.COLOR_YUV2BGR_I420)
    ycrcb = np.dstack([_Y_LUT[y], np.repeat(_C_LUT[v], 2, 0).repeat(2, 1), np.repeat(_C_LUT[u], 2, 0).repeat(2, 1)])
    jfif = cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)  # the JFIF equations
    diff = np.abs(jfif.astype(int) - opencv)
    assert diff.mean() < 0.5 and diff.max() <= 2


def test_other_pixel_formats_and_odd_sizes_take_todays_bgr_path(tmp_path):
    odd = write_clip(tmp_path / "odd.mp4", ClipSpec(75, 51, frames=3))  # yuv444p (odd size)
    rgb = write_clip(tmp_path / "rgb.mkv", ClipSpec(64, 48, frames=3, codec="ffv1"))  # bgr0
    for path in (odd, rgb):
        for bgr, picture in zip(video.iter_frames(path), video.iter_pictures(path), strict=True):
            assert picture.planes is None and np.array_equal(picture.bgr, bgr)
            assert np.array_equal(picture.gray, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    # Even 4:2:0 input with an odd exact output size also keeps the BGR path.
    even = write_clip(tmp_path / "even.mp4", ClipSpec(64, 48, frames=2))
    picture = next(video.iter_pictures(even, size=(33, 25)))
    assert picture.planes is None and picture.shape == (25, 33)


def test_rotated_planes_match_rotated_bgr():
    for angle in (0, 90, 180, 270):
        path = real_video(f"decord_video_{angle}.mov")
        bgr = next(video.iter_frames(path, short_edge=64))
        picture = next(video.iter_pictures(path, short_edge=64))
        assert picture.shape == bgr.shape[:2]
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        assert np.abs(picture.gray.astype(int) - gray).mean() < 1.0, angle


def test_readers_carry_fps_and_open_the_file_once(monkeypatch):
    path = real_video("mmaction2_demo.mp4")
    fps = video.probe(path).fps
    opens = []
    real = av.open
    monkeypatch.setattr(av, "open", lambda f, *a, **k: opens.append(f) or real(f, *a, **k))
    for reader in (video.iter_frames(path), video.iter_pictures(path)):
        assert reader.fps is None  # nothing opened before iterating
        next(reader)
        assert reader.fps == pytest.approx(fps) and fps > 0
        reader.close()
    assert len(opens) == 2  # one per reader


def test_gray_jpeg_is_single_channel_and_close_to_opencvs():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (48, 64), dtype=np.uint8), (0, 0), 1.0)
    ours = _decode(images.encode_jpeg_gray(image, 95), cv2.IMREAD_UNCHANGED)
    theirs = _decode(images.encode_image(image, ".jpg", images.encode_params("jpg", 95)), cv2.IMREAD_UNCHANGED)
    assert ours.shape == image.shape and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - theirs).mean() < 1.0 and _psnr(ours, theirs) > 40


@pytest.mark.slow
@pytest.mark.parametrize("pair", MIDDLEBURY)
def test_tvl1_epe_unchanged_with_gray_from_the_y_plane(pair):
    """Flow's grayscale is now the full-range Y plane instead of cvtColor(BGR2GRAY) of the I420 ->
    BGR image. On the Middlebury colour pairs, made 4:2:0 like a video, TV-L1's EPE against the
    ground truth moves by less than the 0.01 every engine is held to."""
    folder = require_shared("flow", "middlebury", pair)
    cv2.setNumThreads(1)
    old, new = [], []
    for name in ("frame10.png", "frame11.png"):
        i420 = cv2.cvtColor(cv2.imread(str(folder / name)), cv2.COLOR_BGR2YUV_I420)
        old.append(cv2.cvtColor(cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420), cv2.COLOR_BGR2GRAY))
        new.append(_to_picture(av.VideoFrame.from_ndarray(i420, format="yuv420p"), 0, None).gray)
    gt = read_flo(folder / "flow10.flo")
    engine = get_engine("tvl1", backend="opencv")
    epe_old = endpoint_error(engine.compute(*old), gt)
    epe_new = endpoint_error(engine.compute(*new), gt)
    print(f"{pair}: TV-L1 EPE with cvtColor gray {epe_old:.4f}, with Y-plane gray {epe_new:.4f}")
    assert abs(epe_new - epe_old) <= 0.01
