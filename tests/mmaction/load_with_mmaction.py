"""Run inside the mmaction2 test venv (not the project's): load one split through mmaction2 1.x's
RawframeDataset + RawFrameDecode from a directory tree, a zip-packed tree (io_backend
'kinetics_prep', loaded by the config's custom_imports) and an LMDB (mmengine's stock 'lmdb'
backend), RGB and flow, and write every decoded clip to an .npz per layout.

argv: WORK_DIR (holds ann_rgb.txt, ann_flow.txt, dirs/, zips/, db/), OUT_DIR.
"""

import sys
from pathlib import Path

import numpy as np
from mmengine.config import Config
from mmengine.registry import init_default_scope

work, out = Path(sys.argv[1]), Path(sys.argv[2])
init_default_scope("mmaction")
import mmaction.datasets  # noqa: E402,F401  registers RawframeDataset and the transforms
from mmaction.registry import DATASETS  # noqa: E402

# (mmaction.utils.register_all_modules also imports mmaction.models, which the 1.2.0 wheel
# ships broken: its localizers import a 'drn' package the wheel lacks. Datasets need none of it.)

LAYOUTS = {
    "dirs": (str(work / "dirs"), dict()),
    "zips": (str(work / "zips"), dict(io_backend="kinetics_prep")),
    "lmdb": ("", dict(io_backend="lmdb", db_path=str(work / "db"))),
}
MODALITIES = {
    "rgb": dict(ann_file=str(work / "ann_rgb.txt"), filename_tmpl="img_{:05}.jpg", modality="RGB"),
    "flow": dict(ann_file=str(work / "ann_flow.txt"), filename_tmpl="{}_{:05d}.jpg", modality="Flow"),
}

for layout, (prefix, decode) in LAYOUTS.items():
    cfg_path = out / f"cfg_{layout}.py"
    # The two config lines of the README: custom_imports + io_backend on RawFrameDecode.
    lines = ["custom_imports = dict(imports=['kinetics_prep.mmaction'], allow_failed_imports=False)"] if layout == "zips" else []
    lines.append("datasets = dict(")
    for mod, ds in MODALITIES.items():
        pipeline = [dict(type="SampleFrames", clip_len=3, frame_interval=1, num_clips=1, test_mode=True),
                    dict(type="RawFrameDecode", **decode)]
        lines.append(f"    {mod}=dict(type='RawframeDataset', data_prefix=dict(img={prefix!r}), "
                     f"pipeline={pipeline!r}, test_mode=True, **{ds!r}),")
    lines.append(")")
    cfg_path.write_text("\n".join(lines) + "\n")
    cfg = Config.fromfile(str(cfg_path))  # runs custom_imports, as mmaction2's tools/train.py does
    arrays = {}
    for mod in MODALITIES:
        dataset = DATASETS.build(cfg.datasets[mod])
        for i in range(len(dataset)):
            arrays[f"{mod}/{dataset[i]['frame_dir'].rsplit('/', 1)[-1]}"] = dataset[i]["imgs"]
        if layout == "zips" and mod == "rgb":
            # Forked DataLoader workers after the parent opened archives (the backend is cached
            # in FileClient's instances): each must reopen, and read the same bytes.
            import torch.utils.data as tud

            loader = tud.DataLoader(dataset, batch_size=None, num_workers=2, collate_fn=lambda x: x,
                                    multiprocessing_context="fork")
            for j, item in enumerate(loader):
                assert all((a == b).all() for a, b in zip(item["imgs"], dataset[j]["imgs"])), j
    np.savez(out / f"{layout}.npz", **{k: np.stack(v) for k, v in arrays.items()})
    # Only our backend module of this package was imported (with the package's stdlib-only lazy
    # export helper): no cv2-contrib, PyAV or stages.
    ours = sorted(m for m in sys.modules if m.startswith("kinetics_prep"))
    print(layout, len(arrays), "kinetics_prep modules:", ours, "av" in sys.modules)
    assert set(ours) <= {"kinetics_prep", "kinetics_prep.lazy", "kinetics_prep.mmaction"}, ours
    assert "av" not in sys.modules
print("OK")
