"""arrange (flat folder -> class folders) and rename-classes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kinetics_prep.errors import ConfigError, InputError, OutputError
from kinetics_prep.dataset.kinetics import load_annotations
from kinetics_prep.storage.layout import STATE_DIR
from kinetics_prep.stages.arrange import (
    ArrangeOptions,
    RenameClassesOptions,
    arrange_clips,
    rename_classes,
)

CSV = (
    "label,youtube_id,time_start,time_end,split\n"
    "massaging person's head,-dash_id01,10,20,train\n"  # canonical file in SRC
    '"hurling (sport)",-x_y-z,0,10,train\n'  # only "{id}.mp4" in SRC
    '"hurling (sport)",twoseg,0,10,train\n'  # id with two segments,
    '"hurling (sport)",twoseg,30,40,train\n'  # only "twoseg.mp4" in SRC: ambiguous
    '"air drumming",corrupt01,5,15,train\n'  # in SRC and in the replacements
    '"air drumming",gone0001,0,10,train\n'  # nowhere
    "abseiling,valclip01,1,11,val\n"  # another split
)


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "flat"
    rep = tmp_path / "replacement_for_corrupted_k400"
    src.mkdir()
    rep.mkdir()
    (tmp_path / "train.csv").write_text(CSV)
    files = {
        "-dash_id01_000010_000020.mp4": b"dash",
        "-x_y-z.mp4": b"idonly",
        "twoseg.mp4": b"whole",
        "corrupt01_000005_000015.mp4": b"bad",
        "valclip01_000001_000011.mp4": b"val",
        "extra_clip_000000_000010.mp4": b"extra",  # not annotated
        "notes.txt": b"ignored",
        ".hidden.mp4": b"ignored",
    }
    for name, data in files.items():
        (src / name).write_bytes(data)
    (rep / "corrupt01_000005_000015.mp4").write_bytes(b"good")
    return {"root": tmp_path, "src": src, "rep": rep, "csv": tmp_path / "train.csv", "dst": tmp_path / "videos_train"}


def _opts(t: dict[str, Path], **kw) -> ArrangeOptions:
    base = dict(src=t["src"], dst=t["dst"], annotations=(t["csv"],), replacements=t["rep"], split="train")
    base.update(kw)
    return ArrangeOptions(**base)


def test_arrange_symlinks_with_tricky_names_and_replacements(tree: dict[str, Path]) -> None:
    res = arrange_clips(_opts(tree))
    dst = tree["dst"]
    a = dst / "massaging_person's_head" / "-dash_id01_000010_000020.mp4"
    b = dst / "hurling_(sport)" / "-x_y-z_000000_000010.mp4"  # renamed to the canonical name
    c = dst / "air_drumming" / "corrupt01_000005_000015.mp4"
    for p in (a, b, c):
        assert p.is_symlink() and os.path.isabs(os.readlink(p))
    assert a.read_bytes() == b"dash" and b.read_bytes() == b"idonly"
    assert c.read_bytes() == b"good"  # the replacement wins
    assert not (dst / "abseiling").exists()  # val clip not arranged with --split train

    counts = res.splits["train"]
    assert (counts.annotated, counts.found, counts.placed, counts.missing, counts.replaced) == (6, 3, 3, 3, 1)
    assert set(res.splits) == {"train"}
    assert res.unannotated == ("extra_clip_000000_000010.mp4",)
    assert res.other_split == 1
    reasons = {r.clip.name: r.reason for r in res.items if not r.found}
    assert "2 annotated segments" in reasons["twoseg_000000_000010"]
    assert reasons["gone0001_000000_000010"].startswith("not in the source folder")

    report = res.report_dir
    assert report == dst / STATE_DIR
    missing = load_annotations(report / "arrange_missing.csv")  # readable as annotations
    assert {c.name for c in missing} == set(reasons)
    assert (report / "arrange_unannotated.txt").read_text() == "extra_clip_000000_000010.mp4\n"
    summary = json.loads((report / "arrange_summary.json").read_text())
    assert summary["splits"]["train"]["missing"] == 3


def test_arrange_is_idempotent_and_repoints_links(tree: dict[str, Path]) -> None:
    arrange_clips(_opts(tree, replacements=None))
    c = tree["dst"] / "air_drumming" / "corrupt01_000005_000015.mp4"
    assert c.read_bytes() == b"bad"
    again = arrange_clips(_opts(tree, replacements=None))
    t = again.splits["train"]
    assert (t.placed, t.unchanged, t.found) == (0, 3, 3)
    # now with the replacement folder: the link is re-pointed, nothing else changes
    third = arrange_clips(_opts(tree))
    assert third.splits["train"].placed == 1 and third.splits["train"].unchanged == 2
    assert c.read_bytes() == b"good"


def test_arrange_all_splits_and_test_clips_flat(tree: dict[str, Path]) -> None:
    (tree["root"] / "test.csv").write_text("youtube_id,time_start,time_end,split\n-x_y-z,0,10,test\n")
    res = arrange_clips(_opts(tree, split=None, replacements=None))
    assert set(res.splits) == {"train", "val"}
    assert res.splits["val"].found == 1
    assert (tree["dst"] / "abseiling" / "valclip01_000001_000011.mp4").exists()
    res = arrange_clips(_opts(tree, annotations=(tree["root"] / "test.csv",), split=None,
                        dst=tree["root"] / "videos_test", replacements=None))
    assert (tree["root"] / "videos_test" / "-x_y-z_000000_000010.mp4").is_symlink()
    assert res.splits["test"].found == 1


def test_arrange_copy_then_rerun(tree: dict[str, Path]) -> None:
    arrange_clips(_opts(tree, mode="copy"))
    a = tree["dst"] / "massaging_person's_head" / "-dash_id01_000010_000020.mp4"
    assert a.is_file() and not a.is_symlink()
    assert (tree["src"] / "-dash_id01_000010_000020.mp4").exists()
    again = arrange_clips(_opts(tree, mode="copy"))
    assert again.splits["train"].unchanged == 3 and again.splits["train"].placed == 0
    assert not list(tree["dst"].rglob("*.partial"))


def test_arrange_move_then_rerun(tree: dict[str, Path]) -> None:
    arrange_clips(_opts(tree, mode="move", replacements=None))
    assert not (tree["src"] / "-dash_id01_000010_000020.mp4").exists()
    assert (tree["dst"] / "massaging_person's_head" / "-dash_id01_000010_000020.mp4").read_bytes() == b"dash"
    again = arrange_clips(_opts(tree, mode="move", replacements=None))
    t = again.splits["train"]
    assert (t.present, t.found, t.missing) == (3, 3, 3)


def test_arrange_in_place_move(tree: dict[str, Path]) -> None:
    res = arrange_clips(_opts(tree, dst=tree["src"], mode="move", replacements=None))
    assert res.splits["train"].found == 3
    assert (tree["src"] / "hurling_(sport)" / "-x_y-z_000000_000010.mp4").is_file()
    with pytest.raises(ConfigError, match="in place"):
        _opts(tree, dst=tree["src"])


def test_arrange_never_deletes_a_real_file(tree: dict[str, Path]) -> None:
    target = tree["dst"] / "air_drumming" / "corrupt01_000005_000015.mp4"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"precious, different size")
    res = arrange_clips(_opts(tree))
    assert target.read_bytes() == b"precious, different size"
    assert res.splits["train"].conflicts == 1


def test_arrange_options_validation(tree: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="mode"):
        _opts(tree, mode="teleport")
    with pytest.raises(InputError):
        _opts(tree, src=tree["root"] / "nope")
    with pytest.raises(ConfigError, match="no clip of split"):
        arrange_clips(_opts(tree, split="test"))


def test_arrange_torchvision_style(tree: dict[str, Path]) -> None:
    arrange_clips(tree["src"], tree["dst"], tree["csv"], replacements=tree["rep"], split="train",
                  class_style="torchvision")
    assert (tree["dst"] / "massaging_persons_head" / "-dash_id01_000010_000020.mp4").exists()
    assert (tree["dst"] / "hurling_sport").is_dir()


# ---------------------------------------------------------------------------- rename-classes


def test_rename_classes_tricky_names(tmp_path: Path) -> None:
    root = tmp_path / "videos_train"
    names = ["massaging person's head", "hurling (sport)", '"air drumming"', "abseiling",
             "two  spaces", "glob * [x]?", "back\\slash", "-starts with dash"]
    for n in names:
        (root / n).mkdir(parents=True)
        (root / n / "clip.mp4").write_bytes(b"x")
    (root / "file with space.txt").write_text("not a dir")
    res = rename_classes(root)
    got = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert got == sorted(["massaging_person's_head", "hurling_(sport)", "air_drumming", "abseiling",
                          "two__spaces", "glob_*_[x]?", "back\\slash", "-starts_with_dash"])
    assert res.unchanged == 2 and len(res.renamed) == 6
    assert (root / "hurling_(sport)" / "clip.mp4").exists()
    assert (root / "file with space.txt").exists()
    again = rename_classes(root)
    assert again.renamed == () and again.unchanged == 8


def test_rename_classes_refuses_collisions_and_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "r"
    for n in ("a b", "a_b", "c d", 'c "d'):
        (root / n).mkdir(parents=True)
    with pytest.raises(OutputError) as exc:
        rename_classes(root)
    msg = str(exc.value)
    assert "'a b' -> 'a_b', which already exists" in msg
    assert "would both become 'c_d'" in msg
    assert sorted(p.name for p in root.iterdir()) == sorted(["a b", "a_b", "c d", 'c "d'])


def test_rename_classes_dry_run_and_torchvision(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "hurling (sport)").mkdir(parents=True)
    res = rename_classes(RenameClassesOptions((root,), style="torchvision", dry_run=True))
    assert res.renamed == ((root / "hurling (sport)", root / "hurling_sport"),)
    assert (root / "hurling (sport)").is_dir()
    rename_classes(RenameClassesOptions((root,), style="torchvision"))
    assert (root / "hurling_sport").is_dir()
