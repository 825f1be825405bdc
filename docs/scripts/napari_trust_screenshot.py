"""Screenshot of "Classify cells" with a model card, for docs/trust.md:
``docs/images/napari_trust.png``.

    python docs/scripts/napari_trust_screenshot.py [--out docs/images]

1. In a child process (Keras never enters napari's process): white cells cut out of
   synthetic BCCD-like smear fields (:func:`allnet_core.synthetic.synth_smear`, ground-truth
   masks and classes) become a C-NMC-layout dataset, and the quick profile trains on it
   (a few minutes on 2 CPU cores). The best model gets its card.
2. The real BCCD field of the plugin's sample gets a few *synthetic* white cells pasted into
   its background (said so in the image's name): the real white cell is unlike anything
   the model saw and is called out of scope; some pasted cells are in scope, and those the
   model cannot tell are called uncertain. Cells are tried until one of each is on screen.
3. The widget classifies the field; the screenshot shows the card's headline and warnings,
   the legend, the counts and a hovered cell's row.

The model is a synthetic-data demo, not a diagnostic tool.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from napari_screenshots import ROOT, WINDOW, _ensure_display, _shot, _wait  # noqa: E402


def train_child(work: Path, fields: int, epochs: int) -> None:
    """Child process: dataset of synthetic smear white cells, quick training."""
    from allnet_core.io import write_image
    from allnet_core.segmentation import extract_cells
    from allnet_core.synthetic import synth_smear
    from allnet_core.training import TrainConfig, cross_validate

    root = work / "data" / "C-NMC_Leukemia" / "training_data"
    for seed in range(fields):
        rgb, labels, classes = synth_smear(seed=seed, touching_pair=False, border_cell=False)
        crops, table = extract_cells(rgb, labels, size=450)
        for crop, label in zip(crops, table["label"], strict=True):
            cls = classes[int(label)]
            subject = f"{seed // 4 + 1}" if cls == "ALL" else f"H{seed // 4 + 1}"
            folder = root / f"fold_{seed % 3}" / cls.lower()
            folder.mkdir(parents=True, exist_ok=True)
            write_image(folder / f"UID_{subject}_{seed}_{label}_{cls.lower()}.bmp", crop)
    config = TrainConfig.from_profile("quick", epochs=epochs, per_class=150)
    result = cross_validate(work / "data", config, work / "run")
    (work / "model.txt").write_text(str(result.best_model))


def _paste(field: np.ndarray, seed: int, spots) -> np.ndarray:
    """The field with the white cells of synthetic smear ``seed`` pasted at ``spots``."""
    from allnet_core.synthetic import synth_smear

    rgb, labels, _ = synth_smear(seed=seed, n_wbc=len(spots), touching_pair=False,
                                 border_cell=False)
    out = field.copy()
    for label, (cy, cx) in zip(range(1, labels.max() + 1), spots, strict=False):
        rr, cc = np.nonzero(labels == label)
        rr = rr - int(rr.mean()) + cy
        cc = cc - int(cc.mean()) + cx
        ok = (rr >= 0) & (rr < out.shape[0]) & (cc >= 0) & (cc < out.shape[1])
        out[rr[ok], cc[ok]] = rgb[labels == label][ok]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--fields", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--work", type=Path, default=None, help="reuse a trained model here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        train_child(args.work, args.fields, args.epochs)
        return 0
    _ensure_display()  # may re-run this script under xvfb-run
    work = args.work or Path(tempfile.mkdtemp(prefix="allnet-trust-"))
    if not (work / "model.txt").is_file():
        subprocess.run([sys.executable, __file__, "--child", "--work", str(work), "--fields",
                        str(args.fields), "--epochs", str(args.epochs)], check=True)
    model = (work / "model.txt").read_text().strip()

    from napari.qt import get_qapp

    import napari
    from napari_allnet._classify_widget import MODEL_FILE
    from napari_allnet._sample_data import bccd_smear

    app = get_qapp()
    viewer = napari.Viewer(title="napari-allnet")
    viewer.window._qt_window.resize(*WINDOW)
    field = bccd_smear()[0][0]
    dock, cls = viewer.window.add_plugin_dock_widget("napari-allnet", "Classify cells")
    cls.model_source.value = MODEL_FILE
    cls.model_file.value = model
    spots = [(110, 110), (390, 120), (400, 530)]  # background of BloodImage_00000
    found = None
    for seed in range(1000, 1040):
        name = "BCCD BloodImage_00000 + 3 synthetic white cells"
        if name in viewer.layers:
            viewer.layers.remove(name)
        image = viewer.add_image(_paste(field, seed, spots), name=name, rgb=True)
        cls.image.value = image
        cls.run()
        _wait(app, cls)
        layer = viewer.layers[f"{name} classes"]
        calls = set(layer.features["call"])
        print(f"seed {seed}: {sorted(calls)}")
        if {"uncertain", "out_of_scope"} <= calls:
            found = (image, layer)
            break
    if found is None:
        print("no field with both an uncertain and an out-of-scope cell", file=sys.stderr)
        return 1
    image, layer = found
    viewer.layers.selection.active = layer
    row = layer.features[layer.features["call"] == "uncertain"].iloc[0]
    status = layer.get_status((row["centroid_row"], row["centroid_col"]))
    _wait(app, cls, until=lambda: True)
    args.out.mkdir(parents=True, exist_ok=True)
    _shot(viewer, args.out / "napari_trust.png", status=status)
    print(json.dumps(layer.features[["label", "call", "p_all", "oos_score"]]
                     .to_dict(orient="records")))

    from napari_allnet._session import shutdown_clients

    shutdown_clients()
    viewer.close()
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
