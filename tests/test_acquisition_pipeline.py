"""Issue #7: `download-annotations` + `download` + `arrange` take a mirror of the CVDF archives to
class folders of decodable clips in one go, from the command line and from `prepare`.

The mirror (a local HTTP server on 127.0.0.1) holds what CVDF and DeepMind publish, in their
URL layout: the annotation CSVs (tricky labels, ids starting with '-'), DeepMind's tarball, the
path lists, two archive parts per split holding real tiny H.264 clips under deep member paths
(one a plain tar named .tar.gz), and K400's replacement archive for corrupted train videos.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from fake_http import FakeServer, Serving, make_tar
from test_acquire_annotations import deepmind_tarball
from test_scale import tree_state

from kinetics_prep.cli import main
from kinetics_prep.stages.prepare import prepare
from kinetics_prep.video.synthetic import ClipSpec, write_clip
from kinetics_prep.video import probe

FRAMES = 6
K400 = "/kinetics/400"
# split -> (label, youtube id, start, end, which archive part holds it: 0, 1 or None = in none)
CLIPS: dict[str, list[tuple[str, str, int, int, int | None]]] = {
    "train": [
        ("hurling (sport)", "-abcDEF1234", 10, 20, 0),
        ("hurling (sport)", "Zx9_-kL0aQw", 3, 13, 1),
        ("massaging person's head", "--q8Yt7Rb3s", 100, 110, 1),
        ("air drumming", "k7QeZrL6w0A", 0, 10, 0),
        ("air drumming", "-_gone00000", 5, 15, None),  # annotated, never archived
    ],
    "val": [
        ("hurling (sport)", "-valAAAAAAA", 1, 11, 0),
        ("massaging person's head", "valBBBBBBBB", 20, 30, 1),
        ("air drumming", "-valgone000", 0, 10, None),
    ],
}
REPLACED = "Zx9_-kL0aQw_000003_000013.mp4"  # train clip that K400's replacement archive re-encodes
STRAY = "strayCCCCCC_000000_000010.mp4"  # in a val part but in no annotation file
CLASS_DIRS = {"hurling (sport)": "hurling_(sport)", "massaging person's head": "massaging_person's_head",
              "air drumming": "air_drumming"}


def clip_file(yid: str, start: int, end: int) -> str:
    return f"{yid}_{start:06d}_{end:06d}.mp4"


def _csv(split: str) -> bytes:
    """CVDF's columns; labels quoted where csv quoting allows it, as in the official files."""
    rows = ["label,youtube_id,time_start,time_end,split"]
    for label, yid, s, e, _ in CLIPS[split]:
        rows.append(f'"{label}",{yid},{s},{e},{split}' if "(" in label else f"{label},{yid},{s},{e},{split}")
    return ("\n".join(rows) + "\n").encode()


@pytest.fixture(scope="module")
def mirror_files(tmp_path_factory) -> tuple[dict[str, bytes], bytes]:
    """Every file of the mirror by URL path, and the replacement video (built once: the clips
    are real H.264 videos)."""
    work = tmp_path_factory.mktemp("mirror")
    seed = iter(range(1, 100))

    def video(name: str) -> bytes:
        return write_clip(work / name, ClipSpec(64, 48, frames=FRAMES, seed=next(seed))).read_bytes()

    files: dict[str, bytes] = {
        "/deepmind-media/Datasets/kinetics400.tar.gz": deepmind_tarball("kinetics400", "deepmind"),
        f"{K400}/annotations/test.csv": b"youtube_id,time_start,time_end,split\n-testDDDDDD,0,10,test\n",
    }
    for split in ("train", "val"):
        files[f"{K400}/annotations/{split}.csv"] = _csv(split)
        parts: list[list[tuple[str, bytes]]] = [[("./", b"")], []]
        for _label, yid, s, e, part in CLIPS[split]:
            if part == 0:  # the common layout: ./{clip}
                parts[0].append(("./" + clip_file(yid, s, e), video(clip_file(yid, s, e))))
            elif part == 1:  # deep member paths, as one real part has
                deep = f"home/someone/kinetics/v1-0/{split}/"
                parts[1] += [(deep + clip_file(yid, s, e), video(clip_file(yid, s, e))),
                             (deep + "._" + clip_file(yid, s, e), b"macOS junk")]
        if split == "val":
            parts[1].append(("val/" + STRAY, video(STRAY)))
        files[f"{K400}/{split}/part_0.tar.gz"] = make_tar(parts[0], gz=True)
        files[f"{K400}/{split}/part_1.tar.gz"] = make_tar(parts[1], gz=False)  # a plain tar named .tar.gz
        # train's list names the parts by their absolute S3 URLs (as CVDF's do); val's relatively
        names = ("part_0.tar.gz", "part_1.tar.gz")
        prefix = f"https://s3.amazonaws.com{K400}/{split}/" if split == "train" else ""
        files[f"{K400}/{split}/k400_{split}_path.txt"] = "".join(f"{prefix}{n}\n" for n in names).encode()
    fixed = video("replacement.mp4")
    files[f"{K400}/replacement_for_corrupted_k400.tgz"] = make_tar(
        [("replacement_for_corrupted_k400/" + REPLACED, fixed)], gz=True)
    return files, fixed


@pytest.fixture
def mirror(mirror_files):
    files, fixed = mirror_files
    with Serving(FakeServer(files=dict(files))) as server:
        server.replacement_video = fixed  # type: ignore[attr-defined]
        yield server


def check_arranged(root: Path, arranged: str, mirror: FakeServer) -> None:
    """Every annotated clip that an archive holds is ROOT/{arranged}/{class_dir}/{clip}.mp4, a link
    to the flat download that decodes to all its frames; the others are reported missing."""
    for split, clips in CLIPS.items():
        dst = root / arranged.format(split=split)
        # mmaction2 class folders, made only for classes with a clip to place
        assert sorted(p.name for p in dst.iterdir() if not p.name.startswith(".")) == sorted(
            {CLASS_DIRS[label] for label, *_, part in clips if part is not None})
        report = (dst / ".kinetics_prep" / "arrange_missing.csv").read_text().splitlines()
        missing = {row["youtube_id"] for row in csv.DictReader(report)}
        assert missing == {yid for _, yid, _, _, part in clips if part is None}
        for label, yid, s, e, part in clips:
            link = dst / CLASS_DIRS[label] / clip_file(yid, s, e)
            if part is None:
                assert not os.path.lexists(link)
                continue
            assert link.is_symlink() and link.resolve() == (root / f"videos_raw_{split}" / link.name).resolve()
            assert probe(link, count_frames=True).frame_count == FRAMES
        # only annotated clips were arranged (the stray val file was extracted, not arranged)
        assert sum(1 for _ in dst.rglob("*.mp4")) == sum(part is not None for *_, part in clips)
    assert (root / "videos_raw_val" / STRAY).is_file()
    # K400's replacement archive was applied before arranging
    assert (root / arranged.format(split="train") / "hurling_(sport)" / REPLACED).read_bytes() == \
        mirror.replacement_video  # type: ignore[attr-defined]


def test_cli_chain_from_mirror_to_class_folders(mirror, tmp_path, capsys):
    root = tmp_path / "data" / "kinetics400"
    assert main(["download-annotations", "--dataset", "kinetics400", "--root", str(root),
                 "--mirror", mirror.base]) == 0
    ann = root / "annotations"
    assert sorted(p.name for p in ann.iterdir() if p.is_file()) == [
        f"kinetics_{s}.{e}" for s in ("test", "train", "val") for e in ("csv", "json")]
    for split in ("train", "val"):
        assert main(["download", "--dataset", "kinetics400", "--split", split, "--root", str(root),
                     "--mirror", mirror.base, "--connections", "2", "--no-progress"]) == 0
        assert main(["arrange", str(root / f"videos_raw_{split}"), str(root / f"videos_{split}"),
                     "--annotations", str(ann / f"kinetics_{split}.csv")]) == 0
    err = capsys.readouterr().err
    assert "2/2 parts extracted" in err and "'replaced': 1" in err
    assert "unannotated files in SRC: 1" in err  # the stray val clip
    check_arranged(root, "videos_{split}", mirror)

    # a rerun of the chain fetches nothing and changes no link; --strict fails on the missing clip
    mirror.clear_log()
    links = tree_state(root / "videos_train", (".kinetics_prep",))
    assert main(["download-annotations", "--dataset", "kinetics400", "--root", str(root),
                 "--mirror", mirror.base]) == 0
    assert main(["download", "--dataset", "kinetics400", "--split", "train", "--root", str(root),
                 "--mirror", mirror.base, "--no-progress"]) == 0
    assert main(["arrange", str(root / "videos_raw_train"), str(root / "videos_train"), "--strict",
                 "--annotations", str(ann / "kinetics_train.csv")]) == 1
    assert mirror.log == []
    assert tree_state(root / "videos_train", (".kinetics_prep",)) == links


def test_prepare_chain_then_a_rerun_does_nothing(mirror, tmp_path):
    root = tmp_path / "k400"
    cfg = tmp_path / "k400.toml"
    cfg.write_text(f"""
[dataset]
name = "kinetics400"
root = "{root}"
splits = ["train", "val"]
stages = ["annotations", "download", "arrange"]

[runner]
progress = false

[annotations]
mirror = "{mirror.base}"
backoff = 0

[download]
mirror = "{mirror.base}"
connections = 2
backoff = 0
""")
    assert main(["prepare", str(cfg), "--dry-run"]) == 0
    assert mirror.log == [] and not root.exists()

    assert main(["prepare", str(cfg)]) == 0
    # prepare's layout keeps videos_{split} for the resized videos: arranged links live in
    # videos_{split}_raw ([layout] arranged), as in the README's step-by-step commands.
    check_arranged(root, "videos_{split}_raw", mirror)
    assert not (root / "videos_train").exists()

    mirror.clear_log()
    before = tree_state(root, (".kinetics_prep",))
    again = prepare(cfg, echo=lambda line: None)
    assert again.exit_code == 0
    assert mirror.log == []  # no request at all: annotations kept, every part and the replacement done
    steps = {(s.stage, s.split): s.summary for s in again.steps}
    assert steps[("annotations", None)].fetched == []
    for split in ("train", "val"):
        assert {p.status for p in steps[("download", split)].parts} == {"done-before"}
        t = steps[("arrange", split)].total
        assert (t.placed, t.unchanged, t.missing) == (0, t.annotated - 1, 1)
    assert tree_state(root, (".kinetics_prep",)) == before
