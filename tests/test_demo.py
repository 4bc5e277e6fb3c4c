"""`make demo`'s job: the whole pipeline on the synthetic dataset, and a rerun that redoes nothing."""

import os

import pytest

from kinetics_prep.demo import DATASET, run_demo


@pytest.mark.slow
def test_demo_runs_every_stage_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    assert run_demo(out, workers=2, progress=False) == 0
    root = out / "data" / DATASET
    assert (root / "rawframes_train").is_symlink()
    assert os.readlink(root / "rawframes_train") == str((out / "ssd" / f"{DATASET}_extracted_train").resolve())
    lists = {fmt: (root / f"{DATASET}_train_list_{fmt}.txt").read_text().splitlines()
             for fmt in ("videos", "rawframes", "flow")}
    assert all(len(lines) == 6 for lines in lists.values())
    assert "hurling_(sport)/-abcDEF1234_000010_000020 24 1" in lists["rawframes"]
    assert "massaging_person's_head/--q8Yt7Rb3s_000100_000110 23 2" in lists["flow"]
    assert (out / "preview.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "7/7 done." in printed and "filename_tmpl='{}_{:05d}.jpg'" in printed

    assert run_demo(out, workers=2, progress=False) == 0  # second run: everything skipped
    again = capsys.readouterr().out
    assert "0 ok, 6 skipped" in again
