"""`prepare CONFIG.toml`: the whole pipeline on synthetic data, resumable, dry run, subsets."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_scale import tree_state

from kinetics_prep.cli import main
from kinetics_prep.errors import ConfigError
from kinetics_prep.dataset.kinetics import Clip, write_annotations
from kinetics_prep.stages.prepare import load_config, prepare
from kinetics_prep.video.synthetic import ClipSpec, write_clip

REPO = Path(__file__).resolve().parents[1]

CLIPS = [  # label, id, start, end, spec: tricky labels and ids, as in real Kinetics
    ("hurling (sport)", "-abc", 1, 11, ClipSpec(96, 64, frames=8, seed=1)),
    ("massaging person's head", "--xy", 2, 12, ClipSpec(64, 96, frames=6, seed=2)),
    ("air drumming", "k7Q", 3, 13, ClipSpec(80, 60, frames=7, seed=3)),
]


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "k"
    for _label, yid, s, e, spec in CLIPS:
        write_clip(root / "videos_raw_train" / f"{yid}_{s:06d}_{e:06d}.mp4", spec)
    ann = tmp_path / "given" / "train.csv"
    write_annotations([Clip(yid, s, e, label, "train") for label, yid, s, e, _ in CLIPS], ann)
    cfg = tmp_path / "k.toml"
    cfg.write_text(f"""
[dataset]
name = "kinetics_tiny"
root = "{root}"
splits = ["train"]
stages = ["annotations", "arrange", "resize", "extract-frames", "file-list", "verify"]

[runner]
workers = 2
progress = false

[annotations]
files = {{ train = "{ann}" }}

[resize]
short_edge = 64

[extract_frames]
task = "both"
flow_type = "dis"
flow_backend = "opencv"
device = "cpu"
ssd = "{tmp_path}/ssd/{{dataset}}_{{split}}"
""")
    return cfg


@pytest.mark.slow
def test_prepare_end_to_end_then_nothing_to_do(dataset, tmp_path, capsys):
    root = tmp_path / "k"
    plan_before = tree_state(tmp_path)
    assert main(["prepare", str(dataset), "--dry-run"]) == 0
    assert tree_state(tmp_path) == plan_before  # the dry run touched nothing
    assert "arrange" in capsys.readouterr().err

    res = prepare(dataset, echo=lambda line: None)
    assert res.exit_code == 0, [s.lines for s in res.steps]
    assert [s.stage for s in res.steps] == ["annotations", "arrange", "resize", "extract-frames", "file-list",
                                            "verify"]
    assert [s.ok for s in res.runner_summaries()] == [3, 3]
    assert (root / "rawframes_train").is_symlink()
    frames = root / "rawframes_train" / "hurling_(sport)" / "-abc_000001_000011"
    assert len(list(frames.glob("img_*.jpg"))) == 8 and len(list(frames.glob("x_*.jpg"))) == 7
    lists = {p.name: p.read_text().splitlines() for p in root.glob("kinetics_tiny_train_list_*.txt")}
    assert sorted(lists) == ["kinetics_tiny_train_list_flow.txt", "kinetics_tiny_train_list_rawframes.txt",
                             "kinetics_tiny_train_list_videos.txt"]
    assert "hurling_(sport)/-abc_000001_000011 8 1" in lists["kinetics_tiny_train_list_rawframes.txt"]
    assert "hurling_(sport)/-abc_000001_000011 7 1" in lists["kinetics_tiny_train_list_flow.txt"]
    verify = res.steps[-1]
    assert verify.status == "done" and [r.items for r in verify.summary] == [3, 3]  # frames, videos

    outputs = tmp_path / "ssd"
    state = (".kinetics_prep",)  # the reports are rewritten (all "skipped"); the outputs are not
    before = tree_state(outputs, state), tree_state(root / "videos_train", state)
    again = prepare(dataset, echo=lambda line: None)
    assert again.exit_code == 0
    assert [(s.ok, s.skipped) for s in again.runner_summaries()] == [(0, 3), (0, 3)]
    assert (tree_state(outputs, state), tree_state(root / "videos_train", state)) == before  # nothing redone


@pytest.mark.slow
def test_prepare_stage_subsets_shards_and_bad_configs(dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    res = prepare(dataset, stages=["annotations", "arrange"], echo=lambda line: None)
    assert [s.stage for s in res.steps] == ["annotations", "arrange"]
    assert not (tmp_path / "k" / "videos_train").exists()
    # Per-clip stages can run per shard; the others must run unsharded.
    res = prepare(dataset, stages=["resize"], shard="1/2", echo=lambda line: None)
    done_in_1 = res.runner_summaries()[0].ok
    res = prepare(dataset, stages=["resize"], shard="2/2", echo=lambda line: None)
    assert done_in_1 + res.runner_summaries()[0].ok == 3
    with pytest.raises(ConfigError, match="separate, unsharded job"):
        prepare(dataset, stages=["arrange", "resize"], shard="1/2", echo=lambda line: None)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    with pytest.raises(ConfigError, match="SLURM"):
        prepare(dataset, echo=lambda line: None)
    with pytest.raises(ConfigError, match="not in this config's pipeline"):
        prepare(dataset, stages=["download"], echo=lambda line: None)

    text = dataset.read_text()
    for bad, match in ((text.replace("short_edge = 64", "short_edge = 64\nsrc = 'x'"), "come from"),
                       (text.replace("short_edge = 64", "short_edge = 1"), "short-edge"),
                       (text + "\n[resise]\n", "unknown section"),
                       (text.replace("workers = 2", "workers = 2\nshard = '1/2'"), "runner")):
        dataset.write_text(bad)
        with pytest.raises(ConfigError, match=match):
            load_config(dataset)


def test_shipped_kinetics400_config_is_valid():
    cfg = load_config(REPO / "configs" / "kinetics400.toml")
    assert cfg.dataset == "kinetics400" and cfg.pipeline[0] == "annotations" and cfg.pipeline[-1] == "verify"


@pytest.mark.parametrize("section, line, message", [
    ("extract_frames", 'flow_type = "xyz"', "unknown flow engine"),
    ("extract_frames", "flow_params = { tau = -1 }", "tau"),
    ("file_list", 'formats = ["bogus"]', "formats"),
    ("arrange", 'mode = "bogus"', "mode"),
    ("file_list", "level = 3", r"level: 3 is not one of 1, 2"),  # choices from the option's own opt()
    ("verify", 'naming = "bogus"', "naming: 'bogus' is not one of"),
    ("resize", 'workers = "4"', "workers must be int or none, got str"),
    ("runner", "retries = true", "retries must be int, got bool"),
])
def test_bad_stage_values_fail_before_any_work(tmp_path, capsys, section, line, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'[dataset]\nname = "kinetics400"\nroot = "{tmp_path / "root"}"\nsplits = ["val"]\n'
                   f"[{section}]\n{line}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(cfg)
    assert main(["prepare", str(cfg)]) == 2
    assert f"[{section}]" in capsys.readouterr().err
    assert not (tmp_path / "root").exists()  # nothing was started
