"""Runner-level scaling: shards (and SLURM arrays), merge-reports, dry runs, the summary."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from kinetics_prep.cli import main
from kinetics_prep.errors import ConfigError
from kinetics_prep.run.reports import format_summary, merge_reports, read_report
from kinetics_prep.run.runner import OK, Item, ItemResult, RunOptions, run_items
from kinetics_prep.run.sharding import (
    Shard,
    clip_name_of,
    parse_shard,
    resolve_shard,
    shard_from_env,
    shard_of,
)
from kinetics_prep.stages.frames import extract_frames
from kinetics_prep.stages.resize import resize_videos

# ------------------------------------------------------------------ sharding


def _keys(n: int) -> list[str]:
    classes = ["air drumming", "hurling (sport)", "massaging person's head"]
    return [f"{classes[i % 3]}/-id{i:04d}_{i:06d}_{i + 10:06d}.mp4" for i in range(n)]


@pytest.mark.parametrize("n", range(1, 8))
def test_shards_are_disjoint_and_complete(n):
    keys = _keys(1000)
    parts = [{k for k in keys if Shard(k_, n).contains(k)} for k_ in range(1, n + 1)]
    assert sum(len(p) for p in parts) == len(keys)  # disjoint ...
    assert set().union(*parts) == set(keys)  # ... and complete
    if n > 1:  # and roughly balanced
        assert min(len(p) for p in parts) > 1000 / n * 0.7


def test_shard_is_stable_and_follows_the_clip_not_its_folder_or_extension():
    # blake2b, not hash(): the same in every process, on every machine, forever (pinned values).
    assert [shard_of(f"c/clip{i}.mp4", 7) for i in range(8)] == [
        shard_of(f"other class/clip{i}.mkv", 7) for i in range(8)]
    assert [shard_of(f"clip{i}", 5) for i in range(6)] == [4, 1, 1, 3, 5, 3]
    assert clip_name_of("air drumming/-abc_000001_000011.mp4") == "-abc_000001_000011"
    assert clip_name_of("x/clip_dir") == "clip_dir" and clip_name_of(".hidden") == ".hidden"


def test_parse_shard():
    assert parse_shard("2/8") == Shard(2, 8) and str(Shard(2, 8)) == "2/8"
    assert Shard(2, 8).tag == "shard-2-of-8"
    for bad in ("0/4", "5/4", "1/0", "a/b", "3", "-1/2"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_slurm_array_detection():
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "0"}
    assert shard_from_env(env) == Shard(4, 8, "SLURM")  # --array=0-7: task 3 is shard 4/8
    assert shard_from_env({**env, "SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_MIN": "1"}) == Shard(8, 8, "SLURM")
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"}) == Shard(4, 8, "SLURM")
    stepped = {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0",
               "SLURM_ARRAY_TASK_STEP": "4"}  # --array=0-15:4
    assert shard_from_env(stepped) == Shard(4, 4, "SLURM")
    assert shard_from_env({}) is None
    assert shard_from_env({"SLURM_JOB_ID": "5"}) is None  # a job, not an array
    with pytest.raises(ConfigError, match="--shard K/N"):  # --array=1,5,9: ids do not map to 1..3
        shard_from_env({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1"})
    # explicit wins, 1/1 switches sharding off
    assert resolve_shard("2/3", env) == Shard(2, 3)
    assert resolve_shard("1/1", env) is None
    assert resolve_shard(None, env) == Shard(4, 8, "SLURM")


def test_stages_take_the_slurm_array_shard(tiny_tree, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "0")
    plans = [resize_videos(tiny_tree, tmp_path / "o", dry_run=True, progress=False),
             resize_videos(tiny_tree, tmp_path / "o", dry_run=True, progress=False, shard="1/2"),
             resize_videos(tiny_tree, tmp_path / "o", dry_run=True, progress=False, shard="1/1")]
    assert [p.shard for p in plans] == ["2/2", "1/2", None]  # SLURM, explicit flag wins, 1/1 = all
    assert plans[0].total + plans[1].total == plans[2].total == 5
    assert plans[0].report_path.endswith("resize_report.shard-2-of-2.jsonl")
    # A direct run_items call (e.g. verify's) is not sharded by the environment.
    items = _toy(tmp_path, 10)
    assert run_items("toy", items, _square, None, is_done=_done, progress=False).total == 10


def _square(item: Item, options) -> ItemResult:
    n = int(item.src.name)
    if n % 10 == 7:
        raise ValueError("ends in 7")
    item.dst.write_text(str(n * n))
    return ItemResult(key=item.key, status=OK, output=str(item.dst), counts={"n": 1})


def _done(item: Item, options) -> bool:
    return item.dst.exists()


def _toy(tmp_path: Path, n: int) -> list[Item]:
    (tmp_path / "out").mkdir(exist_ok=True)
    return [Item(key=f"c/{i}.x", src=tmp_path / str(i), dst=tmp_path / "out" / f"{i}.out") for i in range(n)]


def test_sharded_runs_cover_everything_once_and_merge(tmp_path, monkeypatch):
    for var in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(var, raising=False)
    items = _toy(tmp_path, 40)
    report = tmp_path / "state" / "toy_report.jsonl"
    seen: list[str] = []
    for k in (1, 2, 3):
        s = run_items("toy", items, _square, None, is_done=_done, report_path=report, progress=False,
                      run=RunOptions(shard=f"{k}/3"))
        assert s.shard == f"{k}/3" and s.all_items == 40
        shard_report = tmp_path / "state" / f"toy_report.shard-{k}-of-3.jsonl"
        assert s.report_path == str(shard_report)
        keys = [r["key"] for r in read_report(shard_report)]
        assert keys and sorted(keys) == sorted((tmp_path / "state" / f"toy_report.shard-{k}-of-3.keys")
                                               .read_text().split())
        seen += keys
    assert sorted(seen) == sorted(it.key for it in items)
    assert not report.exists()

    res = merge_reports([tmp_path / "state"])
    assert (res.count("ok"), res.count("failed"), res.missing_shards, res.missing_keys) == (36, 4, [], [])
    assert res.failed_keys == ["c/17.x", "c/27.x", "c/37.x", "c/7.x"]
    merged = read_report(tmp_path / "state" / "toy_report.merged.jsonl")
    assert [r["key"] for r in merged] == sorted(it.key for it in items)
    assert res.exit_code == 1 and any("ends in 7" in line for line in res.lines())

    # Fix the bug, rerun shard 2 only: the latest status per key wins; done items stay "ok".
    (tmp_path / "out").joinpath("1.out").unlink()
    s2 = run_items("toy", items, _squares_fixed, None, is_done=_done, report_path=report, progress=False,
                   run=RunOptions(shard="2/3"))
    res = merge_reports([tmp_path / "state"], expected_shards=3)
    fixed_in_2 = [k for k in res.records if Shard(2, 3).contains(k) and k.endswith("7.x")]
    assert all(res.records[k]["status"] == "ok" for k in fixed_in_2) and s2.failed == 0
    assert res.count("failed") == 4 - len(fixed_in_2)


def _squares_fixed(item: Item, options) -> ItemResult:
    item.dst.write_text("fixed")
    return ItemResult(key=item.key, status=OK, output=str(item.dst))


def test_merge_reports_tells_what_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    items = _toy(tmp_path, 30)
    report = tmp_path / "state" / "toy_report.jsonl"
    run_items("toy", items, _square, None, is_done=_done, report_path=report, progress=False,
              run=RunOptions(shard="1/4"))
    run_items("toy", items, _square, None, is_done=_done, report_path=report, progress=False,
              run=RunOptions(shard="3/4"))
    # Shard 3 was killed after two items: its report is cut short (last line half written).
    p3 = tmp_path / "state" / "toy_report.shard-3-of-4.jsonl"
    lines = p3.read_text().splitlines()
    p3.write_text("\n".join(lines[:2]) + "\n" + lines[2][:10])
    res = merge_reports([tmp_path / "state"], expected_shards=4, out=tmp_path / "merged.jsonl")
    assert res.missing_shards == [2, 4]
    assert len(res.missing_keys) == len(lines) - 2
    assert not res.complete
    code = main(["merge-reports", str(tmp_path / "state"), "--expect-shards", "4", "-o", str(tmp_path / "m.jsonl")])
    err = capsys.readouterr().err
    assert code == 1 and "missing shards (no report): 2, 4" in err and "planned item(s) have no result" in err


# ------------------------------------------------------------------ dry run and summary


def tree_state(root: Path, skip: tuple[str, ...] = ()) -> str:
    """A hash of every path, file content, link target and mtime under root (minus `skip`
    folder names)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            h.update(f"{p.relative_to(root)}|{st.st_mode}|{st.st_size}|{st.st_mtime_ns}".encode())
            if p.is_symlink():
                h.update(os.readlink(p).encode())
            elif p.is_file():
                h.update(p.read_bytes())
    return h.hexdigest()


def test_dry_run_changes_nothing_and_reports_the_plan(tiny_tree, tmp_path, capsys):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(tiny_tree, src, symlinks=True)
    out = tmp_path / "out"
    first = resize_videos(src, out, workers=1, progress=False, ext="mp4")  # the .mkv is left to do
    assert first.ok == 4
    # A previous run failed on one clip: the report says so.
    report = out / ".kinetics_prep" / "resize_report.jsonl"
    rows = read_report(report)
    victim = rows[0]["key"]
    (out / victim).unlink()
    rows[0] = {"key": victim, "status": "failed", "error": "DecodeError: x.mp4: broken"}
    report.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = tree_state(tmp_path)

    plan = resize_videos(src, out, dry_run=True, progress=False)
    assert plan.dry_run and plan.exit_code == 0
    assert (plan.plan.done, len(plan.plan.todo)) == (3, 2)
    assert list(plan.plan.failed_before) == [victim]
    assert plan.plan.est_files == 2 and plan.plan.est_bytes > 0
    text = format_summary(plan)
    assert "dry run, nothing changed" in text and "1 of them failed last time" in text and "estimated output" in text

    assert main(["resize", str(src), str(out), "--dry-run"]) == 0
    assert "2 to do" in capsys.readouterr().err
    frames = extract_frames(out, tmp_path / "frames", task="rgb", dry_run=True, ssd=tmp_path / "ssd", progress=False)
    assert len(frames.plan.todo) == 3 and frames.plan.est_files > 3 * 20
    assert main(["resize", str(src), str(out), "--dry-run", "--shard", "2/2"]) == 0
    assert tree_state(tmp_path) == before  # nothing written, not even a report or the SSD link


def test_summary_reports_throughput_size_and_grouped_failures(tmp_path):
    items = _toy(tmp_path, 20)
    s = run_items("toy", items, _square, None, is_done=_done, progress=False, rate_key="n",
                  report_path=tmp_path / "r.jsonl")
    text = format_summary(s)
    assert s.bytes == sum((tmp_path / "out" / f"{i}.out").stat().st_size for i in range(20) if i % 10 != 7)
    assert "18 ok, 0 skipped, 2 failed of 20" in text
    assert "items/s" in text and "n/s" in text and "B written" in text and "elapsed" in text
    assert "  2 failed: ValueError: " in text  # grouped by reason, then the items
    assert f"report: {tmp_path / 'r.jsonl'}" in text


def test_run_control_is_validated_up_front(tiny_tree, tmp_path):
    with pytest.raises(ConfigError):
        RunOptions(executor="slurm")
    with pytest.raises(ConfigError, match="needs --executor ray"):
        RunOptions(ray_address="auto")
    with pytest.raises(ConfigError):
        resize_videos(tiny_tree, tmp_path / "o", shard="3/2")
    with pytest.raises(ConfigError, match="unknown option.*sharding"):
        resize_videos(tiny_tree, tmp_path / "o", executor="local", sharding="1/2")


def test_missing_ray_is_one_line(tiny_tree, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    code = main(["resize", str(tiny_tree), str(tmp_path / "o"), "--executor", "ray", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.endswith("pip install 'kinetics-prep[ray]'") and "\n" not in err
