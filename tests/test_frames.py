"""extract-frames: one decode, exact counts, naming, flow values, SSD links, resume, failures."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import real_video

from kinetics_prep import video
from kinetics_prep.cli import main
from kinetics_prep.errors import ConfigError, OutputError
from kinetics_prep.flow import dequantize, get_engine, quantize
from kinetics_prep.storage.layout import link_ssd
from kinetics_prep.stages import frames as frames_stage
from kinetics_prep.stages.frames import extract_frames
from kinetics_prep.video.synthetic import ClipSpec, write_clip


@pytest.fixture(scope="module")
def lossless_tree(tmp_path_factory) -> Path:
    """Two lossless clips with known motion under tricky names."""
    root = tmp_path_factory.mktemp("frames") / "videos"
    write_clip(root / "hurling (sport)" / "-id_000001_000011.mkv",
               ClipSpec(64, 48, frames=6, motion=(2, 1), codec="ffv1", seed=11))
    write_clip(root / "massaging person's head" / "--b_000002_000012.mkv",
               ClipSpec(48, 64, frames=4, motion=(-1, 0), codec="ffv1", seed=12))
    return root


def _names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


@pytest.mark.slow
def test_both_tasks_exact_counts_naming_and_metadata(lossless_tree, tmp_path):
    out = tmp_path / "rawframes"
    summary = extract_frames(lossless_tree, out, workers=2, progress=False)
    assert (summary.ok, summary.failed) == (2, 0)
    assert summary.counts == {"frames": 10, "pairs": 8}
    clip = out / "hurling (sport)" / "-id_000001_000011"
    names = _names(clip)
    assert [n for n in names if n.startswith("img_")] == [f"img_{i:05d}.jpg" for i in range(1, 7)]
    assert [n for n in names if n.startswith("x_")] == [f"x_{i:05d}.jpg" for i in range(1, 6)]
    assert [n for n in names if n.startswith("y_")] == [f"y_{i:05d}.jpg" for i in range(1, 6)]
    meta = json.loads((clip / "kinetics_prep.json").read_text())
    assert (meta["frames"], meta["flow_pairs"], meta["width"], meta["height"]) == (6, 5, 64, 48)
    assert meta["flow"]["type"] == "tvl1" and meta["flow"]["backend"] == "numba"  # auto on the CPU
    assert set(meta["flow"]["versions"]) == {"numba", "llvmlite", "numpy", "opencv"}
    assert meta["flow"]["params"]["tau"] == 0.25 and meta["naming"] == "mmaction2"
    assert not list(out.rglob("*.partial"))


def test_flow_recovers_known_translation(lossless_tree, tmp_path):
    out = tmp_path / "rawframes"
    extract_frames(lossless_tree, out, flow_format="png", workers=1, progress=False)
    clip = out / "hurling (sport)" / "-id_000001_000011"
    x = cv2.imread(str(clip / "x_00002.png"), cv2.IMREAD_UNCHANGED)
    y = cv2.imread(str(clip / "y_00002.png"), cv2.IMREAD_UNCHANGED)
    assert x.ndim == 2 and x.dtype == np.uint8  # one single-channel image per axis
    flow = dequantize(np.stack([x, y], -1), 20)
    interior = flow[8:-8, 8:-8]
    assert np.median(interior[..., 0]) == pytest.approx(2.0, abs=0.2)
    assert np.median(interior[..., 1]) == pytest.approx(1.0, abs=0.2)


def test_png_flow_is_exactly_the_quantised_engine_output(lossless_tree, tmp_path):
    out = tmp_path / "rawframes"
    extract_frames(lossless_tree, out, flow_format="png", flow_type="farneback", workers=1, progress=False)
    src = lossless_tree / "massaging person's head" / "--b_000002_000012.mkv"
    grays = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in video.iter_frames(src)]
    expected = quantize(get_engine("farneback").compute(grays[0], grays[1]), 20)
    clip = out / "massaging person's head" / "--b_000002_000012"
    got = np.stack([cv2.imread(str(clip / f"{a}_00001.png"), cv2.IMREAD_UNCHANGED) for a in "xy"], -1)
    np.testing.assert_array_equal(got, expected)


def test_rgb_and_flow_come_from_one_decode_and_one_open(lossless_tree, tmp_path, monkeypatch):
    # The container is opened once per clip: the frame rate comes from the same open as the frames.
    import av

    opens = []
    real = av.open

    def counting(file, *args, **kw):
        opens.append(Path(file).name)
        return real(file, *args, **kw)

    monkeypatch.setattr(av, "open", counting)
    extract_frames(lossless_tree, tmp_path / "o", flow_type="dis", workers=1, progress=False)
    assert sorted(opens) == sorted(["-id_000001_000011.mkv", "--b_000002_000012.mkv"])
    meta = json.loads((tmp_path / "o" / "hurling (sport)" / "-id_000001_000011" / "kinetics_prep.json").read_text())
    assert meta["fps"] == 25.0


def test_denseflow_naming_step_and_too_short_clip(tmp_path):
    src = tmp_path / "v" / "c"
    write_clip(src / "five.mkv", ClipSpec(32, 32, frames=5, codec="ffv1"))
    write_clip(src / "one.mkv", ClipSpec(32, 32, frames=1, codec="ffv1"))
    out = tmp_path / "o"
    summary = extract_frames(tmp_path / "v", out, naming="denseflow", step=2, flow_type="dis",
                             workers=1, progress=False)
    assert summary.exit_code == 0
    five = _names(out / "c" / "five")
    assert "img_00000.jpg" in five and "img_00004.jpg" in five and "img_00005.jpg" not in five
    assert [n for n in five if n.startswith("flow_x_")] == ["flow_x_00000.jpg", "flow_x_00001.jpg", "flow_x_00002.jpg"]
    one = _names(out / "c" / "one")
    assert one == ["img_00000.jpg", "kinetics_prep.json"]
    reports = [json.loads(line) for line in (out / ".kinetics_prep" / "extract-frames_report.jsonl").read_text().splitlines()]
    note = {r["key"]: r.get("note") for r in reports}["c/one.mkv"]
    assert "no flow" in note


def test_sizes_new_short_exact_and_rotation(tmp_path):
    src = tmp_path / "v" / "c"
    src.mkdir(parents=True)
    os.symlink(real_video("decord_video_90.mov"), src / "rot90.mov")
    os.symlink(real_video("decord_video_0.mov"), src / "rot0.mov")
    out = tmp_path / "o"
    extract_frames(tmp_path / "v", out, task="rgb", new_short=64, progress=False, workers=1)
    rot90 = cv2.imread(str(out / "c" / "rot90" / "img_00001.jpg"))
    rot0 = cv2.imread(str(out / "c" / "rot0" / "img_00001.jpg"))
    assert rot90.shape == (114, 64, 3) and rot0.shape == (64, 114, 3)  # portrait stays portrait
    # Upright as FFmpeg displays it (test_video.py checks iter_frames against the ffmpeg CLI).
    upright = next(video.iter_frames(real_video("decord_video_90.mov"), short_edge=64))
    assert np.abs(rot90.astype(int) - upright.astype(int)).mean() < 3  # JPEG q95 only
    out2 = tmp_path / "o2"
    extract_frames(tmp_path / "v", out2, task="rgb", new_width=40, new_height=30, progress=False, workers=1)
    assert cv2.imread(str(out2 / "c" / "rot90" / "img_00003.jpg")).shape == (30, 40, 3)


def test_real_clips_count_by_decoding_and_corrupted_fails_cleanly(tmp_path):
    src = tmp_path / "v" / "c"
    src.mkdir(parents=True)
    for name in ("decord_flipping_a_pancake.mkv", "moviepy_no_duration.webm", "decord_corrupted.mp4"):
        os.symlink(real_video(name), src / name)
    out = tmp_path / "o"
    summary = extract_frames(tmp_path / "v", out, task="rgb", new_short=32, workers=2, progress=False)
    assert (summary.ok, summary.failed, summary.exit_code) == (2, 1, 1)
    assert "decord_corrupted.mp4" in summary.failures[0].error
    assert len(list((out / "c" / "decord_flipping_a_pancake").glob("img_*.jpg"))) == 310
    assert len(list((out / "c" / "moviepy_no_duration").glob("img_*.jpg"))) == 74
    assert sorted(p.name for p in (out / "c").iterdir()) == ["decord_flipping_a_pancake", "moviepy_no_duration"]


def test_resume_and_adding_flow_to_rgb_only_clips(lossless_tree, tmp_path):
    out = tmp_path / "o"
    first = extract_frames(lossless_tree, out, task="rgb", workers=1, progress=False)
    assert first.ok == 2
    again = extract_frames(lossless_tree, out, task="rgb", workers=1, progress=False)
    assert (again.ok, again.skipped) == (0, 2)
    flow = extract_frames(lossless_tree, out, task="flow", flow_type="dis", workers=1, progress=False)
    assert flow.ok == 2
    clip = out / "hurling (sport)" / "-id_000001_000011"
    names = _names(clip)
    assert sum(n.startswith("img_") for n in names) == 6 and sum(n.startswith("x_") for n in names) == 5
    assert json.loads((clip / "kinetics_prep.json").read_text())["task"] == "both"
    assert extract_frames(lossless_tree, out, task="both", workers=1, progress=False).skipped == 2


def test_input_frames_mode_computes_flow_from_frame_dirs(lossless_tree, tmp_path):
    rgb = tmp_path / "rgb"
    extract_frames(lossless_tree, rgb, task="rgb", workers=1, progress=False)
    out = tmp_path / "flow"
    summary = extract_frames(rgb, out, input_frames=True, task="flow", flow_type="dis", workers=1, progress=False)
    assert summary.ok == 2
    names = _names(out / "hurling (sport)" / "-id_000001_000011")
    assert sum(n.startswith("x_") for n in names) == 5 and not any(n.startswith("img_") for n in names)


def test_ssd_link_semantics(tmp_path):
    ssd = tmp_path / "ssd" / "k400_train"
    link = tmp_path / "data" / "rawframes_train"
    made = link_ssd(ssd, str(link) + "/")  # trailing slash names the link itself
    assert made == link and link.is_symlink() and os.readlink(link) == str(ssd) and ssd.is_dir()
    link_ssd(str(ssd) + "/", link)  # idempotent
    assert not (ssd / "k400_train").exists()  # no nested link inside the target
    with pytest.raises(OutputError, match="already a symlink"):
        link_ssd(tmp_path / "elsewhere", link)
    real = tmp_path / "data" / "rawframes_val"
    real.mkdir()
    (real / "keep.txt").write_text("data")
    with pytest.raises(OutputError, match="non-empty directory"):
        link_ssd(tmp_path / "ssd" / "val", real)
    assert (real / "keep.txt").exists()
    empty = tmp_path / "data" / "rawframes_test"
    empty.mkdir()
    assert link_ssd(tmp_path / "ssd" / "test", empty).is_symlink()
    with pytest.raises(ConfigError):
        link_ssd(link / "inner", link)
    with pytest.raises(ConfigError, match="inside the SSD directory"):
        link_ssd(ssd, ssd / "inside")  # would point at itself
    assert not (ssd / "inside").exists()


def test_extract_onto_ssd_and_cli(lossless_tree, tmp_path, capsys):
    ssd = tmp_path / "ssd"
    out = tmp_path / "data" / "rawframes_train"
    rc = main(["extract-frames", str(lossless_tree), str(out), "--ssd", str(ssd), "--flow-type", "dis",
               "--workers", "1", "--no-progress"])
    assert rc == 0
    assert out.is_symlink() and Path(os.readlink(out)) == ssd
    assert (ssd / "hurling (sport)" / "-id_000001_000011" / "x_00005.jpg").is_file()
    printed = capsys.readouterr().out
    assert "filename_tmpl='img_{:05}.jpg'" in printed and "filename_tmpl='{}_{:05d}.jpg'" in printed
    assert main(["link-ssd", str(ssd), str(out)]) == 0  # idempotent standalone command


@pytest.mark.parametrize("args, message", [
    (["--new-short", "64", "--new-width", "10", "--new-height", "10"], "not both"),
    (["--new-width", "10"], "go together"),
    (["--flow-type", "dis", "--tvl1-tau", "0.3"], "tvl1"),
    (["--tvl1-scales", "0"], "scales"),
    (["--step", "0"], "step"),
])
def test_cli_rejects_bad_options_before_work(lossless_tree, tmp_path, capsys, args, message):
    out = tmp_path / "o"
    assert main(["extract-frames", str(lossless_tree), str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_extract_options_validate():
    with pytest.raises(ConfigError):
        frames_stage.ExtractOptions(src=".", out="o", task="depth")
    with pytest.raises(ConfigError):
        frames_stage.ExtractOptions(src=".", out="o", jpeg_quality=0)


@pytest.mark.slow
def test_torch_backend_runs_through_extract_frames_on_cpu(tmp_path):
    pytest.importorskip("torch")
    src = tmp_path / "v" / "c"
    write_clip(src / "tiny.mkv", ClipSpec(40, 32, frames=4, motion=(1, 0), codec="ffv1"))
    out = tmp_path / "o"
    summary = extract_frames(tmp_path / "v", out, flow_backend="torch", device="cpu", batch_size=2,
                             flow_format="png", workers=1, progress=False)
    assert summary.exit_code == 0 and summary.counts == {"frames": 4, "pairs": 3}
    meta = json.loads((out / "c" / "tiny" / "kinetics_prep.json").read_text())
    assert (meta["flow"]["backend"], meta["flow"]["device"]) == ("torch", "cpu")
    # The stage writes exactly what the engine computes for the same frames, batch or not.
    grays = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in video.iter_frames(src / "tiny.mkv")]
    engine = get_engine("tvl1", backend="torch", device="cpu")
    for i in range(3):
        expected = quantize(engine.compute(grays[i], grays[i + 1]), 20)
        got = np.stack([cv2.imread(str(out / "c" / "tiny" / f"{a}_{i + 1:05d}.png"), cv2.IMREAD_UNCHANGED)
                        for a in "xy"], -1)
        assert np.abs(got.astype(int) - expected).max() <= 1


def test_gpus_without_cuda_is_a_config_error(lossless_tree, tmp_path):
    with pytest.raises(ConfigError, match="--gpus"):
        extract_frames(lossless_tree, tmp_path / "o", flow_backend="opencv", gpus=(0,), progress=False)
