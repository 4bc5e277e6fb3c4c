"""file-list: mmaction2 video / rawframe / flow lists, parsed back the way mmaction2 reads them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import require_shared

from kinetics_prep.errors import ConfigError, InputError
from kinetics_prep.storage.framedir import META_FILE, NAMINGS, count_frames
from kinetics_prep.stages.filelist import (
    FileListOptions,
    build_file_lists,
    list_file_name,
)


def make_frames(d: Path, frames: int, pairs: int, naming: str = "mmaction2", meta: bool | dict = True,
                flow_ext: str = "jpg", skip: tuple[str, ...] = ()) -> Path:
    """A frame directory of empty files under a naming preset (+ kinetics_prep.json)."""
    nm = NAMINGS[naming]
    d.mkdir(parents=True, exist_ok=True)
    names = [nm.rgb_name(nm.start + i) for i in range(frames)]
    for i in range(pairs):
        names += list(nm.flow_names(nm.start + i, flow_ext))
    for n in names:
        if n not in skip:
            (d / n).touch()
    if meta:
        data = {"naming": naming, "frames": frames, "flow_pairs": pairs, "flow_format": flow_ext}
        if isinstance(meta, dict):
            data.update(meta)
        (d / META_FILE).write_text(json.dumps(data))
    return d


# ---- mmaction2's loaders, as documented (1.x): what must parse our lines


def rawframe_dataset_parse(list_path: Path) -> list[tuple[str, int, int]]:
    """RawframeDataset (with_offset=False, single label): split on any whitespace."""
    out = []
    for line in list_path.read_text().splitlines():
        parts = line.strip().split()
        assert len(parts) == 3, line
        out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def video_dataset_parse(list_path: Path) -> list[tuple[str, int]]:
    """VideoDataset: split on ONE space."""
    out = []
    for line in list_path.read_text().splitlines():
        parts = line.strip().split(" ")
        assert len(parts) == 2, line
        out.append((parts[0], int(parts[1])))
    return out


K400_LABELS = "\n".join(["abseiling", "air drumming", "hurling (sport)", "massaging person's head"])

ANN = (
    "label,youtube_id,time_start,time_end,split\n"
    "massaging person's head,-dash01,10,20,val\n"
    '"hurling (sport)",hurl0001,0,10,val\n'
    '"hurling (sport)",hurl0001,20,30,val\n'
    '"air drumming",xy_mismatch,0,10,val\n'
    '"air drumming",gap00001,0,10,val\n'
    '"air drumming",metabad1,0,10,val\n'
    "abseiling,partial1,0,10,val\n"
    "abseiling,nowhere1,0,10,val\n"
    "abseiling,spaced01,0,10,val\n"
    "abseiling,trainonly,0,10,train\n"
    "zumba,trainzumba,0,10,train\n"
)


@pytest.fixture
def rawroot(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "rawframes_val"
    make_frames(root / "massaging_person's_head" / "-dash01_000010_000020", 8, 7)
    make_frames(root / "hurling_(sport)" / "hurl0001_000000_000010", 5, 4, meta=False)
    make_frames(root / "hurling_(sport)" / "hurl0001_000020_000030", 6, 5, naming="denseflow", meta=False)
    make_frames(root / "air_drumming" / "xy_mismatch_000000_000010", 5, 4, skip=("y_00004.jpg",), meta=False)
    make_frames(root / "air_drumming" / "gap00001_000000_000010", 5, 4, skip=("img_00003.jpg",), meta=False)
    make_frames(root / "air_drumming" / "metabad1_000000_000010", 5, 4, meta={"frames": 9})
    make_frames(root / "abseiling" / "partial1_000000_000010.partial", 3, 0, meta=False)
    make_frames(root / "abseiling" / "notannotated_000000_000010", 3, 2)
    make_frames(root / "abseil ing" / "spaced01_000000_000010", 3, 2)
    (root / "abseiling" / "stray.txt").write_text("a file among frame dirs")
    ann = tmp_path / "val.csv"
    ann.write_text(ANN)
    lm = tmp_path / "labels.txt"
    lm.write_text(K400_LABELS + "\n")
    return {"root": root, "ann": ann, "map": lm, "out": tmp_path / "lists"}


def test_rawframes_and_flow_with_annotations(rawroot: dict[str, Path]) -> None:
    opts = FileListOptions(rawroot["root"], rawroot["out"], formats=("rawframes", "flow"), dataset="kinetics400",
                           split="val", annotations=(rawroot["ann"],), label_map=rawroot["map"])
    res = build_file_lists(opts)
    raw, flow = res.summaries
    assert raw.list_path == rawroot["out"] / "kinetics400_val_list_rawframes.txt"
    assert flow.list_path.name == "kinetics400_val_list_flow.txt"
    assert raw.list_path.read_text() == (
        "air_drumming/xy_mismatch_000000_000010 5 1\n"
        "hurling_(sport)/hurl0001_000000_000010 5 2\n"
        "hurling_(sport)/hurl0001_000020_000030 6 2\n"
        "massaging_person's_head/-dash01_000010_000020 8 3\n"
    )
    assert flow.list_path.read_text() == (
        "air_drumming/gap00001_000000_000010 4 1\n"
        "air_drumming/metabad1_000000_000010 4 1\n"
        "hurling_(sport)/hurl0001_000000_000010 4 2\n"
        "hurling_(sport)/hurl0001_000020_000030 5 2\n"
        "massaging_person's_head/-dash01_000010_000020 7 3\n"
    )
    assert (raw.annotated, raw.listed, raw.missing, raw.incomplete, raw.refused, raw.unannotated) == (9, 4, 2, 2, 1, 1)
    assert raw.namings == {"mmaction2": 3, "denseflow": 1}
    assert any("different namings" in w for w in res.warnings)

    report = {line.split("\t")[0]: line.split("\t")[2] for line in raw.missing_path.read_text().splitlines()[1:]}
    assert report["gap00001_000000_000010"].startswith("incomplete (mmaction2 naming): 4 files run img_00001.jpg..img_00005.jpg, expected img_00001.jpg..img_00004.jpg")
    assert "says 9" in report["metabad1_000000_000010"]
    assert report["partial1_000000_000010"].startswith("unfinished")
    assert report["nowhere1_000000_000010"] == "not found under the root"
    assert "whitespace" in report["spaced01_000000_000010"]
    assert report["notannotated_000000_000010"] == "not in the annotations of this split"
    freport = {line.split("\t")[0]: line.split("\t")[2] for line in flow.missing_path.read_text().splitlines()[1:]}
    assert "x and y flow counts differ (4 x_* vs 3 y_*)" in freport["xy_mismatch_000000_000010"]
    assert "says 9" not in freport.get("metabad1_000000_000010", "")

    # mmaction2 semantics: each line parses; paths exist relative to the root; counts match
    for rel, n, label in rawframe_dataset_parse(raw.list_path):
        assert count_frames(rawroot["root"] / rel).frames == n
        assert 0 <= label < 4
    for rel, n, label in rawframe_dataset_parse(flow.list_path):
        assert count_frames(rawroot["root"] / rel).flow_x == n
        assert 0 <= label < 4


def test_label_ids_from_train_annotations_without_map(rawroot: dict[str, Path]) -> None:
    res = build_file_lists(FileListOptions(rawroot["root"], rawroot["out"], split="val", annotations=(rawroot["ann"],)))
    assert "train labels" in res.label_source
    # train labels are {abseiling, zumba}: val classes that are not train classes are refused
    text = res.summaries[0].missing_path.read_text()
    assert "class 'hurling (sport)' is not in the label map" in text
    assert res.summaries[0].listed == 0


def test_denseflow_config_and_forced_naming(rawroot: dict[str, Path]) -> None:
    res = build_file_lists(FileListOptions(rawroot["root"], rawroot["out"], formats=("rawframes", "flow"),
                                           split="val", annotations=(rawroot["ann"],), label_map=rawroot["map"],
                                           naming="denseflow"))
    raw = res.summaries[0]
    assert raw.listed == 1 and raw.namings == {"denseflow": 1}
    assert "start_index=0" in res.config["rawframes"]
    assert "filename_tmpl='flow_{}_{:05d}.jpg'" in res.config["flow"]
    res = build_file_lists(FileListOptions(rawroot["root"], rawroot["out"], formats=("rawframes", "flow"),
                                           split="val", annotations=(rawroot["ann"],), label_map=rawroot["map"],
                                           naming="mmaction2"))
    assert "filename_tmpl='img_{:05}.jpg', start_index=1" in res.config["rawframes"]
    assert "filename_tmpl='{}_{:05d}.jpg', modality='Flow'" in res.config["flow"]


def test_without_annotations_labels_from_class_dirs(tmp_path: Path) -> None:
    root = tmp_path / "r"
    for cls, clip in [("zumba", "a_000000_000010"), ("abseiling", "b_000000_000010"), ("air_drumming", "c_000000_000010")]:
        make_frames(root / cls / clip, 3, 2)
    res = build_file_lists(root, tmp_path / "o", split="train")
    assert "sorted class directories" in res.label_source
    assert res.summaries[0].list_path.read_text() == (
        "abseiling/b_000000_000010 3 0\nair_drumming/c_000000_000010 3 1\nzumba/a_000000_000010 3 2\n"
    )
    k400 = require_shared("annotations", "mmaction2_label_map_k400.txt")
    res = build_file_lists(FileListOptions(root, tmp_path / "o", split="train", label_map=k400))
    assert res.summaries[0].list_path.read_text() == (
        "abseiling/b_000000_000010 3 0\nair_drumming/c_000000_000010 3 1\nzumba/a_000000_000010 3 399\n"
    )


def test_test_split_level1_label_minus_one(tmp_path: Path) -> None:
    root = tmp_path / "rawframes_test"
    make_frames(root / "-t1_000000_000010", 4, 3)
    make_frames(root / "t2_000005_000015", 2, 1)
    res = build_file_lists(root, tmp_path / "o", formats=("rawframes", "flow"), split="test", level=1)
    assert res.summaries[0].list_path.read_text() == "-t1_000000_000010 4 -1\nt2_000005_000015 2 -1\n"
    assert res.summaries[1].list_path.read_text() == "-t1_000000_000010 3 -1\nt2_000005_000015 1 -1\n"
    with pytest.raises(ConfigError, match="level 1"):
        FileListOptions(root, tmp_path / "o", split="val", level=1)


def test_json_output_and_shuffle(tmp_path: Path) -> None:
    root = tmp_path / "r"
    for i in range(30):
        make_frames(root / ("a" if i % 2 else "b") / f"c{i:03d}_000000_000010", 2 + i % 3, 1)
    o = tmp_path / "o"
    res = build_file_lists(FileListOptions(root, o, formats=("rawframes", "flow"), split="val", output_format="json"))
    data = json.loads(res.summaries[0].list_path.read_text())
    assert res.summaries[0].list_path.name == "kinetics400_val_list_rawframes.json"
    assert data[0] == {"frame_dir": "a/c001_000000_000010", "total_frames": 3, "label": [0]}
    first = build_file_lists(FileListOptions(root, o, split="val", shuffle=True, seed=7)).summaries[0].list_path.read_text()
    again = build_file_lists(FileListOptions(root, o, split="val", shuffle=True, seed=7)).summaries[0].list_path.read_text()
    other = build_file_lists(FileListOptions(root, o, split="val", shuffle=True, seed=8)).summaries[0].list_path.read_text()
    plain = build_file_lists(FileListOptions(root, o, split="val")).summaries[0].list_path.read_text()
    assert first == again and first != other and first != plain
    assert sorted(first.splitlines()) == sorted(plain.splitlines())


def test_videos_list(tmp_path: Path) -> None:
    root = tmp_path / "videos_val"
    (root / "hurling_(sport)").mkdir(parents=True)
    (root / "hurling_(sport)" / "-h1_000000_000010.mp4").write_bytes(b"v")
    (root / "hurling_(sport)" / "empty_000000_000010.mp4").write_bytes(b"")
    (root / "hurling_(sport)" / "broken_000000_000010.mp4").symlink_to(tmp_path / "gone.mp4")
    (root / "hurling_(sport)" / "notes.txt").write_text("x")
    (root / "air drumming").mkdir()
    (root / "air drumming" / "a1_000000_000010.mp4").write_bytes(b"v")
    res = build_file_lists(FileListOptions(root, tmp_path / "o", formats=("videos",), split="val",
                                           label_map=require_shared("annotations", "mmaction2_label_map_k400.txt")))
    s = res.summaries[0]
    assert s.list_path.read_text() == "hurling_(sport)/-h1_000000_000010.mp4 161\n"
    assert video_dataset_parse(s.list_path) == [("hurling_(sport)/-h1_000000_000010.mp4", 161)]
    report = s.missing_path.read_text()
    assert "empty file" in report and "broken link" in report and "whitespace" in report
    assert (s.incomplete, s.refused) == (2, 1)


def test_paddlevideo_videos_list_reproduced(tmp_path: Path) -> None:
    """Files named after PaddleVideo's K400 val list, labelled through mmaction2's K400 map,
    give exactly PaddleVideo's list (same format: `class/clip.mp4 label`)."""
    ref = require_shared("annotations", "paddlevideo_k400_val_small_videos.list")
    root = tmp_path / "videos_val"
    for line in ref.read_text().splitlines():
        p = root / line.split(" ")[0]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"v")
    res = build_file_lists(FileListOptions(root, tmp_path / "o", formats=("videos",), split="val",
                                           label_map=require_shared("annotations", "mmaction2_label_map_k400.txt")))
    # (PaddleVideo's small list repeats each of its 16 clips 8 times)
    assert res.summaries[0].list_path.read_text().splitlines() == sorted(set(ref.read_text().splitlines()))


def test_paddlevideo_frames_list_reproduced(tmp_path: Path) -> None:
    ref = require_shared("annotations", "paddlevideo_k400_val_small_frames.list")
    lines = sorted(set(ref.read_text().splitlines()))[:8]
    root = tmp_path / "rawframes_val"
    for line in lines:
        rel, n, _ = line.split()
        make_frames(root / rel, int(n), 0, meta=False)
    res = build_file_lists(FileListOptions(root, tmp_path / "o", split="val",
                                           label_map=require_shared("annotations", "mmaction2_label_map_k400.txt")))
    assert res.summaries[0].list_path.read_text().splitlines() == sorted(lines)


def test_real_mmaction2_reference_frames(tmp_path: Path) -> None:
    imgs = require_shared("mmaction2_reference", "imgs")
    fc = count_frames(imgs)
    assert (fc.naming, fc.frames, fc.flow_x, fc.flow_y) == ("mmaction2", 10, 5, 5)
    assert not fc.rgb_problem and not fc.flow_problem
    root = tmp_path / "rawframes_val"
    (root / "abseiling").mkdir(parents=True)
    os.symlink(imgs, root / "abseiling" / "imgs")
    res = build_file_lists(FileListOptions(root, tmp_path / "o", formats=("rawframes", "flow"), split="val"))
    assert res.summaries[0].list_path.read_text() == "abseiling/imgs 10 0\n"
    assert res.summaries[1].list_path.read_text() == "abseiling/imgs 5 0\n"
    # the same token structure as mmaction2's own test list ("imgs 5 127")
    ref = require_shared("mmaction2_reference", "annotations", "rawframe_test_list.txt")
    assert [len(x.split()) for x in ref.read_text().splitlines()] == [3, 3]


def test_metadata_png_flow_and_unknown_naming(tmp_path: Path) -> None:
    d = make_frames(tmp_path / "c", 4, 3, flow_ext="png")
    fc = count_frames(d)
    assert (fc.frames, fc.flow_x, fc.flow_problem) == (4, 3, "")
    (d / META_FILE).write_text(json.dumps({"naming": "weird", "frames": 4, "flow_pairs": 3, "flow_format": "png"}))
    assert "unknown naming" in count_frames(d).rgb_problem
    (d / META_FILE).write_text("{not json")
    assert "unreadable" in count_frames(d).rgb_problem


def test_options_validation(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    with pytest.raises(ConfigError, match="format"):
        FileListOptions(root, tmp_path, formats=("audio",))
    with pytest.raises(ConfigError, match="dataset"):
        FileListOptions(root, tmp_path, dataset="../x")
    with pytest.raises(ConfigError, match="output format"):
        FileListOptions(root, tmp_path, output_format="csv")
    with pytest.raises(InputError):
        FileListOptions(tmp_path / "none", tmp_path)
    with pytest.raises(ConfigError, match="naming"):
        FileListOptions(root, tmp_path, naming="nope")
    ann = tmp_path / "a.csv"
    ann.write_text("label,youtube_id,time_start,time_end,split\nx,y,0,10,train\n")
    with pytest.raises(ConfigError, match="no clip of split 'val'"):
        build_file_lists(FileListOptions(root, tmp_path / "o", split="val", annotations=(ann,)))
    assert list_file_name("kinetics700", "train", "flow") == "kinetics700_train_list_flow.txt"
    with pytest.raises(ConfigError, match="unknown option"):
        build_file_lists(root, tmp_path / "o", frobnicate=True)
    with pytest.raises(ConfigError, match="either"):
        build_file_lists(FileListOptions(root, tmp_path / "o"), split="val")


def test_replaced_leftover_is_not_a_clip(tmp_path: Path) -> None:
    # What a killed --overwrite leaves beside the committed clip: the old output moved aside.
    root = tmp_path / "rawframes_train"
    make_frames(root / "a" / "c1_000000_000010", 3, 2)
    make_frames(root / "a" / "c1_000000_000010.replaced", 3, 2)
    make_frames(root / "a.replaced" / "c2_000000_000010", 3, 2)
    res = build_file_lists(root, tmp_path / "o", formats=("rawframes", "flow"), split="train")
    raw, flow = res.summaries
    assert raw.list_path.read_text() == "a/c1_000000_000010 3 0\n"
    assert flow.list_path.read_text() == "a/c1_000000_000010 2 0\n"
    assert raw.not_listed == 0 and flow.not_listed == 0


def test_config_template_follows_the_flow_format(tmp_path: Path) -> None:
    root = tmp_path / "rawframes_train"
    make_frames(root / "a" / "c1_000000_000010", 3, 2, flow_ext="png")
    res = build_file_lists(root, tmp_path / "o", formats=("rawframes", "flow"), split="train")
    assert "filename_tmpl='{}_{:05d}.png', modality='Flow'" in res.config["flow"]
    assert "filename_tmpl='img_{:05}.jpg', start_index=1" in res.config["rawframes"]
    make_frames(root / "a" / "c2_000000_000010", 3, 2, naming="denseflow", flow_ext="png")
    res = build_file_lists(root, tmp_path / "o", formats=("flow",), split="train", naming="denseflow")
    assert "filename_tmpl='flow_{}_{:05d}.png', modality='Flow', start_index=0" in res.config["flow"]


def test_file_list_prints_the_png_template_for_a_tree_extracted_with_png_flow(tmp_path: Path, capsys) -> None:
    from kinetics_prep.cli import main
    from kinetics_prep.video.synthetic import ClipSpec, write_clip

    write_clip(tmp_path / "videos" / "a" / "c_000000_000010.mkv", ClipSpec(32, 24, frames=4, codec="ffv1"))
    root = tmp_path / "rawframes_train"
    assert main(["extract-frames", str(tmp_path / "videos"), str(root), "--flow-type", "dis", "--flow-format", "png",
                 "--workers", "1", "--no-progress"]) == 0
    assert "filename_tmpl='{}_{:05d}.png'" in capsys.readouterr().out
    assert main(["file-list", str(root), "--format", "rawframes", "flow"]) == 0
    err = capsys.readouterr().err
    assert "filename_tmpl='{}_{:05d}.png', modality='Flow', start_index=1" in err
    assert "filename_tmpl='img_{:05}.jpg', start_index=1" in err
