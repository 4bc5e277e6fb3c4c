"""Annotations, clip names, class names, label maps, subsets and overlap."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import require_shared

from kinetics_prep.errors import AnnotationError, ConfigError, InputError
from kinetics_prep.dataset.subsets import (
    ClassesOptions,
    SelectOptions,
    list_classes,
    overlap,
    select_clips,
    select_subset,
)
from kinetics_prep.dataset.kinetics import (
    CSV_HEADER,
    TORCHVISION_ORDER_DIFFERENCES,
    Annotations,
    Clip,
    LabelMap,
    class_dir_name,
    clip_name,
    label_map_for,
    load_annotations,
    parse_clip_name,
    read_label_map,
    sort_labels,
    write_annotations,
    write_label_map,
)

TRICKY_CSV = (
    "label,youtube_id,time_start,time_end,split,is_cc\n"
    '"air drumming",-abc_DEF-12,38,48,train,0\n'
    "massaging person's head,xyz123abc45,0,10,train,1\n"
    '"hurling (sport)",--dashdash1,120,130,val,0\n'
    '"hurling (sport)",--dashdash1,200,210,val,0\n'
    "abseiling,plainid0001,5,15,val,0\n"
)


def write(path: Path, text: str, newline: str = "\n", bom: bool = False) -> Path:
    data = text.replace("\n", newline)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode("utf-8"))
    return path


# ---------------------------------------------------------------------------- real K600 val


@pytest.fixture(scope="module")
def k600_val() -> Annotations:
    return load_annotations(require_shared("annotations", "kinetics-600_val.csv"))


def test_real_k600_val_parses(k600_val: Annotations) -> None:
    assert len(k600_val) == 30000
    assert k600_val.duplicates == ()
    assert k600_val.split_counts() == {"val": 30000}
    assert len(k600_val.labels()) == 600
    # hundreds of ids start with '-' and are kept verbatim
    dashed = [c for c in k600_val if c.youtube_id.startswith("-")]
    assert len(dashed) > 100
    assert dashed[0].name.startswith("-")
    # the same youtube id twice, with different segments: two clips, two names
    per_id = Counter(c.youtube_id for c in k600_val)
    twice = [yid for yid, n in per_id.items() if n == 2]
    assert twice
    names = {c.name for c in k600_val if c.youtube_id == twice[0]}
    assert len(names) == 2
    first = k600_val.clips[0]
    assert first == Clip("yq_M1PMw2hY", 38, 48, "abseiling", "val")
    assert first.name == "yq_M1PMw2hY_000038_000048"


def test_real_k600_label_ids_equal_mmaction2_map(k600_val: Annotations) -> None:
    ref = read_label_map(require_shared("annotations", "mmaction2_label_map_k600.txt"))
    lm, source = label_map_for(k600_val)
    assert source == "all"  # no train split given; val has every class
    assert lm.names == ref.names
    for c in k600_val.clips[::997]:
        assert lm.id_of(c.label) == ref.names.index(c.label)
        assert lm.id_of(class_dir_name(c.label)) == ref.names.index(c.label)


@pytest.mark.parametrize("k", ["400", "600", "700"])
def test_mmaction2_label_maps_are_sorted_by_mmaction2_rule(k: str) -> None:
    names = read_label_map(require_shared("annotations", f"mmaction2_label_map_k{k}.txt")).names
    assert tuple(sort_labels(names, "mmaction2")) == names


@pytest.mark.parametrize("k", ["400", "600", "700"])
def test_torchvision_order_differences_are_documented_exactly(k: str) -> None:
    names = read_label_map(require_shared("annotations", f"mmaction2_label_map_k{k}.txt")).names
    tv = sort_labels(names, "torchvision")
    diffs = tuple((n, i, tv.index(n)) for i, n in enumerate(names) if tv.index(n) != i)
    assert diffs == TORCHVISION_ORDER_DIFFERENCES[f"kinetics{k}"]


def test_paddlevideo_id_name_label_list_matches_mmaction2_k400() -> None:
    pv = read_label_map(require_shared("annotations", "paddlevideo_k400_Kinetics-400_label_list.txt"))
    k400 = read_label_map(require_shared("annotations", "mmaction2_label_map_k400.txt"))
    assert len(pv) == len(k400) == 400
    assert pv.names[1] == "air_drumming"  # "1 air_drumming" lines: id + directory name
    for i, name in enumerate(k400.names):
        assert pv.id_of(name) == i


# ---------------------------------------------------------------------------- parsing


def test_tricky_csv_by_header(tmp_path: Path) -> None:
    ann = load_annotations(write(tmp_path / "k.csv", TRICKY_CSV))
    assert [c.label for c in ann] == [
        "air drumming",
        "massaging person's head",
        "hurling (sport)",
        "hurling (sport)",
        "abseiling",
    ]
    assert ann.clips[0].youtube_id == "-abc_DEF-12"
    assert ann.clips[0].name == "-abc_DEF-12_000038_000048"
    assert ann.clips[2].name != ann.clips[3].name
    assert ann.split_counts() == {"train": 2, "val": 3}


def test_columns_in_any_order_crlf_and_bom(tmp_path: Path) -> None:
    text = "split,time_end,youtube_id,label,time_start\nval,48,abc,\"air drumming\",38\n"
    ann = load_annotations(write(tmp_path / "x.csv", text, newline="\r\n", bom=True))
    assert ann.clips == (Clip("abc", 38, 48, "air drumming", "val"),)


def test_test_csv_without_label_column(tmp_path: Path) -> None:
    text = "youtube_id,time_start,time_end,split\n-dash_id_01,0,10,test\nother,3,13,test\n"
    ann = load_annotations(write(tmp_path / "kinetics_test.csv", text))
    assert [c.label for c in ann] == [None, None]
    assert not ann.has_labels
    assert ann.clips[0].name == "-dash_id_01_000000_000010"


def test_split_from_file_name_when_no_split_column(tmp_path: Path) -> None:
    ann = load_annotations(write(tmp_path / "kinetics-400_validate.csv", "label,youtube_id,time_start,time_end\na,b,1,2\n"))
    assert ann.clips[0].split == "val"
    with pytest.raises(AnnotationError, match="no 'split' column"):
        load_annotations(write(tmp_path / "clips.csv", "label,youtube_id,time_start,time_end\na,b,1,2\n"))
    ann = load_annotations(tmp_path / "clips.csv", default_split="train")
    assert ann.clips[0].split == "train"


def test_split_optional_when_not_required(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "clips.csv", "youtube_id,time_start,time_end,split\nb,1,2,\nc,1,2,val\n")
    with pytest.raises(AnnotationError, match="unknown split"):
        load_annotations(csv_path)
    no_column = write(tmp_path / "more.csv", "youtube_id,time_start,time_end\nd,1,2\n")
    js = write(tmp_path / "clips.json", '{"e": {"annotations": {"label": "a", "segment": [1, 2]}}}')
    ann = load_annotations([csv_path, no_column, js], require_split=False)
    assert [(c.name, c.split) for c in ann] == [
        ("b_000001_000002", None), ("c_000001_000002", "val"), ("d_000001_000002", None), ("e_000001_000002", None)]


def test_float_times_accepted_when_whole(tmp_path: Path) -> None:
    ann = load_annotations(write(tmp_path / "a.csv", "label,youtube_id,time_start,time_end,split\na,b,1.0,11.0,train\n"))
    assert ann.clips[0].name == "b_000001_000011"


@pytest.mark.parametrize(
    "row, message",
    [
        ("a,b,1,11", "expected 5 fields"),
        ("a,b,x,11,train", "time_start is not a number"),
        ("a,b,1.5,11,train", "whole number"),
        ("a,b,12,11,train", "must be after"),
        ("a,b,-1,11,train", "negative"),
        (",b,1,11,train", "empty label"),
        ("a,,1,11,train", "invalid youtube_id"),
        ("a,b/c,1,11,train", "invalid youtube_id"),
        ("a,b,1,11,holdout", "unknown split"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = write(tmp_path / "bad.csv", "label,youtube_id,time_start,time_end,split\nok,fine,1,2,train\n" + row + "\n")
    with pytest.raises(AnnotationError, match=message) as exc:
        load_annotations(path)
    assert f"{path}:3:" in str(exc.value)


def test_missing_column_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match=r"bad\.csv:1: .*lacks column"):
        load_annotations(write(tmp_path / "bad.csv", "label,id,start,end\n"))
    with pytest.raises(AnnotationError, match="empty"):
        load_annotations(write(tmp_path / "empty.csv", ""))
    with pytest.raises(InputError):
        load_annotations(tmp_path / "nope.csv")


def test_duplicates_reported_not_fatal(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", "label,youtube_id,time_start,time_end,split\nx,id1,1,11,train\nx,id1,1,11,train\n")
    b = write(tmp_path / "b.csv", "label,youtube_id,time_start,time_end,split\ny,id1,1,11,val\nz,id2,1,11,val\n")
    ann = load_annotations([a, b])
    assert [c.name for c in ann] == ["id1_000001_000011", "id2_000001_000011"]
    assert len(ann.duplicates) == 2
    d0, d1 = ann.duplicates
    assert (d0.line, d0.first_line) == (3, 2)
    assert d1.source == str(b) and d1.line == 2 and d1.label == "y" and d1.first_label == "x"
    assert "differs" in str(d1) and f"{b}:2" in str(d1)


def test_json_annotations(tmp_path: Path) -> None:
    data = {
        "-abc_DEF-12": {
            "annotations": {"label": "massaging person's head", "segment": [38.0, 48.0]},
            "duration": 10.0,
            "subset": "validate",
            "url": "https://www.youtube.com/watch?v=-abc_DEF-12",
        },
        "xyz": {"annotations": {"label": "hurling (sport)", "segment": [0, 10]}, "subset": "train"},
        "tst": {"annotations": {"segment": [1, 11]}, "subset": "testing"},
    }
    ann = load_annotations(write(tmp_path / "k.json", json.dumps(data, indent=2)))
    assert ann.clips == (
        Clip("-abc_DEF-12", 38, 48, "massaging person's head", "val"),
        Clip("xyz", 0, 10, "hurling (sport)", "train"),
        Clip("tst", 1, 11, None, "test"),
    )


def test_json_errors_and_duplicate_keys(tmp_path: Path) -> None:
    text = '{\n "a": {"annotations": {"label": "x", "segment": [1, 11]}, "subset": "train"},\n' \
           ' "b": {"annotations": {"label": "x", "segment": [5]}, "subset": "train"}\n}\n'
    with pytest.raises(AnnotationError, match=r"k\.json:3: .*segment"):
        load_annotations(write(tmp_path / "k.json", text))
    dup = '{"a": {"annotations": {"label": "x", "segment": [1, 11]}, "subset": "train"},' \
          ' "a": {"annotations": {"label": "y", "segment": [1, 11]}, "subset": "train"}}'
    ann = load_annotations(write(tmp_path / "d.json", dup))
    assert len(ann) == 1 and len(ann.duplicates) == 1
    with pytest.raises(AnnotationError, match="invalid JSON"):
        load_annotations(write(tmp_path / "broken.json", '{"a": '))


def test_write_annotations_round_trip(tmp_path: Path) -> None:
    ann = load_annotations(write(tmp_path / "k.csv", TRICKY_CSV))
    out = write_annotations(ann.clips, tmp_path / "out.csv")
    with open(out, newline="") as f:
        assert tuple(next(csv.reader(f))) == CSV_HEADER
    assert load_annotations(out).clips == ann.clips
    test = [Clip("-t", 1, 11, None, "test")]
    out = write_annotations(test, tmp_path / "test.csv")
    assert out.read_text().splitlines()[0] == "youtube_id,time_start,time_end,split"
    assert load_annotations(out).clips == tuple(test)


# ---------------------------------------------------------------------------- names and maps


def test_clip_names() -> None:
    assert clip_name("-x_y", 5, 15) == "-x_y_000005_000015"
    assert parse_clip_name("-x_y_000005_000015") == ("-x_y", 5, 15)
    assert parse_clip_name("plain") is None
    assert Clip("a", 1, 2, "b c").file_name() == "a_000001_000002.mp4"
    assert Clip("a", 1, 2, "b c").class_dir() == "b_c"


def test_class_dir_names() -> None:
    assert class_dir_name("massaging person's head") == "massaging_person's_head"
    assert class_dir_name("hurling (sport)") == "hurling_(sport)"
    assert class_dir_name('"air drumming"') == "air_drumming"
    assert class_dir_name("massaging person's head", "torchvision") == "massaging_persons_head"
    assert class_dir_name("hurling (sport)", "torchvision") == "hurling_sport"
    with pytest.raises(ConfigError):
        class_dir_name("x", "pytorchvideo")
    with pytest.raises(AnnotationError):
        class_dir_name("a/b")


def test_label_map_lookup_and_io(tmp_path: Path) -> None:
    lm = LabelMap.from_labels(["hurling (sport)", "air drumming", "massaging person's head"])
    assert lm.names == ("air drumming", "hurling (sport)", "massaging person's head")
    for name in ("hurling (sport)", "hurling_(sport)", "hurling_sport"):
        assert lm.id_of(name) == 1
    assert "massaging_persons_head" in lm and "nope" not in lm
    with pytest.raises(KeyError, match="close"):
        lm.id_of("air drummin")
    p = write_label_map(lm, tmp_path / "map.txt")
    assert p.read_text() == "air drumming\nhurling (sport)\nmassaging person's head\n"
    assert read_label_map(p) == lm
    with pytest.raises(AnnotationError, match="both become"):
        sort_labels(["a b", "a_b"])
    with pytest.raises(AnnotationError, match="blank line"):
        read_label_map(write(tmp_path / "gap.txt", "a\n\nb\n"))


# ---------------------------------------------------------------------------- classes, select


def test_list_classes_counts_and_label_map(tmp_path: Path) -> None:
    path = write(tmp_path / "k.csv", TRICKY_CSV)
    res = list_classes(ClassesOptions((path,), label_map_out=tmp_path / "map.txt"))
    assert res.id_source == "train"
    assert res.label_map.names == ("air drumming", "massaging person's head")
    by_label = {c.label: c for c in res.classes}
    assert by_label["hurling (sport)"].id is None  # not a train class
    assert by_label["hurling (sport)"].counts == {"val": 2}
    assert by_label["massaging person's head"].class_dir == "massaging_person's_head"
    assert (tmp_path / "map.txt").read_text() == "air drumming\nmassaging person's head\n"


def test_list_classes_real_k600_writes_mmaction2_map(tmp_path: Path) -> None:
    path = require_shared("annotations", "kinetics-600_val.csv")
    res = list_classes(path, label_map_out=tmp_path / "k600.txt")
    ref = require_shared("annotations", "mmaction2_label_map_k600.txt")
    assert (tmp_path / "k600.txt").read_bytes() == ref.read_bytes()
    assert sum(c.counts["val"] for c in res.classes) == 30000


def _many(tmp_path: Path) -> Path:
    rows = ["label,youtube_id,time_start,time_end,split"]
    for split in ("train", "val"):
        for k, label in enumerate(["air drumming", "hurling (sport)", "massaging person's head", "zumba"]):
            for i in range(25):
                rows.append(f'"{label}",{split[0]}{k}-{i:03d},{i},{i + 10},{split}')
    return write(tmp_path / "many.csv", "\n".join(rows) + "\n")


def test_select_reproducible_with_seed(tmp_path: Path) -> None:
    src = _many(tmp_path)
    opts = dict(annotations=(src,), classes=("hurling_(sport)", "massaging person's head"),
                max_samples=7, shuffle=True, seed=3)
    a = select_subset(SelectOptions(out=tmp_path / "a.csv", **opts))
    select_subset(SelectOptions(out=tmp_path / "b.csv", **opts))
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert a.counts == {"train": 7, "val": 7} and a.seed == 3
    assert {c.label for c in a.clips} <= {"hurling (sport)", "massaging person's head"}
    c = select_subset(SelectOptions(out=tmp_path / "c.csv", **{**opts, "seed": 4}))
    assert c.clips != a.clips
    # choosing one split only does not change that split's choice
    d = select_subset(SelectOptions(out=tmp_path / "d.csv", splits=("val",), **opts))
    assert d.clips == tuple(x for x in a.clips if x.split == "val")
    # the subset is a valid annotation file with the official header
    back = load_annotations(tmp_path / "a.csv")
    assert back.clips == a.clips
    assert (tmp_path / "a.csv").read_text().splitlines()[0] == ",".join(CSV_HEADER)


def test_select_without_shuffle_takes_first_and_limits(tmp_path: Path) -> None:
    ann = load_annotations(_many(tmp_path))
    first = select_clips(ann.clips, splits=("val",), max_samples=3)
    assert [c.youtube_id for c in first] == ["v0-000", "v0-001", "v0-002"]
    per_class = select_clips(ann.clips, max_per_class=2)
    assert Counter((c.split, c.label) for c in per_class) == {
        (s, lb): 2 for s in ("train", "val")
        for lb in ("air drumming", "hurling (sport)", "massaging person's head", "zumba")
    }
    res = select_subset(tmp_path / "many.csv", tmp_path / "s.csv", shuffle=True, classes="zumba")
    assert {c.label for c in res.clips} == {"zumba"}
    assert isinstance(res.seed, int)  # drawn and reported, so the run can be repeated


def test_select_validation(tmp_path: Path) -> None:
    src = _many(tmp_path)
    with pytest.raises(ConfigError, match="unknown class.*close"):
        select_subset(SelectOptions((src,), tmp_path / "o.csv", classes=("zumb",)))
    with pytest.raises(ConfigError, match="max_samples"):
        SelectOptions((src,), tmp_path / "o.csv", max_samples=0)
    with pytest.raises(ConfigError, match="overwrite"):
        SelectOptions((src,), src)
    with pytest.raises(ConfigError, match="unknown split"):
        SelectOptions((src,), tmp_path / "o.csv", splits=("dev",))


# ---------------------------------------------------------------------------- overlap


def test_overlap_finds_planted_ids(tmp_path: Path) -> None:
    head = "label,youtube_id,time_start,time_end,split\n"
    a = write(tmp_path / "a.csv", head + "x,-shared1,0,10,train\nx,only_a,0,10,train\nx,shared2,0,10,train\nx,shared2,20,30,train\n")
    b = write(tmp_path / "b.csv", head + "y,shared2,50,60,val\ny,-shared1,0,10,val\ny,only_b,0,10,val\n")
    res = overlap(a, b)
    assert res.shared_ids == ("-shared1", "shared2")
    assert (res.a_ids, res.b_ids, res.a_clips, res.b_clips, res.same_clips) == (3, 3, 3, 2, 1)


def test_overlap_real_file_with_itself_subset(tmp_path: Path, k600_val: Annotations) -> None:
    sub = write_annotations(k600_val.clips[:50], tmp_path / "sub.csv")
    res = overlap(k600_val, sub)
    assert len(res.shared_ids) == len({c.youtube_id for c in k600_val.clips[:50]})
