"""download-annotations against a local mirror of CVDF and DeepMind."""

from __future__ import annotations

import json

import pytest
from fake_http import FakeServer, Serving, make_tar

from kinetics_prep.acquire import download_annotations
from kinetics_prep.errors import DownloadError

HEADER = "label,youtube_id,time_start,time_end,split\n"


def deepmind_tarball(top: str, tag: str) -> bytes:
    members = []
    for stem in ("train", "validate", "test"):
        csv = (HEADER + f'"air drumming",-abc{stem[:3]}1234,0,10,{stem}\n' + f"# {tag}\n").encode()
        js = json.dumps({f"-abc{stem[:3]}1234": {"annotations": {"label": "air drumming", "segment": [0.0, 10.0]},
                                                 "subset": stem}}).encode()
        members += [(f"{top}/{stem}.csv", csv), (f"{top}/{stem}.json", js), (f"{top}/._{stem}.csv", b"junk")]
    return make_tar(members, gz=True)


@pytest.fixture
def mirror():
    fake = FakeServer()
    fake.files["/deepmind-media/Datasets/kinetics400.tar.gz"] = deepmind_tarball("kinetics400", "deepmind")
    fake.files["/deepmind-media/Datasets/kinetics700.tar.gz"] = deepmind_tarball("kinetics700", "deepmind")
    for split in ("train", "val", "test"):
        fake.files[f"/kinetics/400/annotations/{split}.csv"] = (HEADER + f"abseiling,xyz{split},1,11,{split}\n").encode()
    with Serving(fake) as server:
        yield server


def test_annotations_in_mmaction2_names_with_json(mirror, tmp_path):
    root = tmp_path / "data" / "kinetics400"
    s = download_annotations("kinetics400", root, mirror=mirror.base, backoff=0)
    ann = root / "annotations"
    for split in ("train", "val", "test"):
        # CSVs from CVDF (the set that matches the CVDF videos)
        assert (ann / f"kinetics_{split}.csv").read_text() == HEADER + f"abseiling,xyz{split},1,11,{split}\n"
        # JSON from DeepMind, validate -> val
        stem = {"val": "validate"}.get(split, split)
        assert json.loads((ann / f"kinetics_{split}.json").read_text())[f"-abc{stem[:3]}1234"]["subset"] == stem
    assert s.csv_source == "cvdf" and sorted(s.csv) == ["test", "train", "val"] and not s.missing
    assert (ann / "deepmind" / "validate.csv").exists()
    assert not list(ann.rglob("._*")) and not list(root.rglob("*.partial"))
    assert not list((root / ".kinetics_prep").rglob("*.tar.gz"))

    mirror.clear_log()
    download_annotations("kinetics400", root, mirror=mirror.base)
    assert mirror.log == []  # everything in place: nothing fetched
    download_annotations("kinetics400", root, mirror=mirror.base, force=True)
    assert len(mirror.requests("GET")) == 4


def test_kinetics700_csv_comes_from_deepmind(mirror, tmp_path):
    s = download_annotations("kinetics700", tmp_path, mirror=mirror.base)
    assert s.csv_source == "deepmind"
    text = (tmp_path / "annotations" / "kinetics_val.csv").read_text()
    assert "-abcval1234" in text and "# deepmind" in text
    assert not mirror.requests(path="/kinetics/400/annotations/train.csv")


def test_missing_remote_file_is_a_download_error(mirror, tmp_path):
    del mirror.files["/kinetics/400/annotations/test.csv"]
    with pytest.raises(DownloadError, match="404"):
        download_annotations("kinetics400", tmp_path, mirror=mirror.base, backoff=0)
    assert not (tmp_path / "annotations" / "kinetics_test.csv").exists()
