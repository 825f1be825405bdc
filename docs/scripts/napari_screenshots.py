"""Screenshots of the napari-allnet widgets at work, for docs/napari.md and the README.

Drives a real napari viewer (under Xvfb when there is no display)::

    python docs/scripts/napari_screenshots.py            # re-runs itself under xvfb-run
    python docs/scripts/napari_screenshots.py --out docs/images

It opens the real BCCD sample shipped with the plugin, segments it, trains a small model
with the "quick" profile on a synthetic dataset from the "Train ALLNet" widget (a few
minutes on a 2-core CPU), then classifies the BCCD field with that model and Grad-CAM.
The model is a synthetic-data demo, not a diagnostic tool. Writes ``napari_segment.png``,
``napari_train.png``, ``napari_classify.png`` and ``napari_gradcam.png``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WINDOW = (1800, 1000)


def _ensure_display() -> None:
    if os.environ.get("DISPLAY") or os.environ.get("ALLNET_NO_XVFB"):
        return
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        sys.exit("no display and no xvfb-run: install Xvfb or run on a desktop")
    env = {**os.environ, "ALLNET_NO_XVFB": "1", "QT_QPA_PLATFORM": "xcb"}
    cmd = [xvfb, "-a", "-s", "-screen 0 1920x1200x24", sys.executable, *sys.argv]
    sys.exit(subprocess.call(cmd, env=env))


def _wait(app, widget, timeout: float = 1800.0, until=None) -> None:
    """Process Qt events until the widget is idle (or ``until()`` is true)."""
    deadline = time.monotonic() + timeout
    done = until or (lambda: not widget.busy)
    while not done():
        app.processEvents()
        time.sleep(0.05)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{type(widget).__name__} still busy after {timeout} s")
    for _ in range(20):  # let layers and labels repaint
        app.processEvents()
        time.sleep(0.02)


def _dismiss_toasts(viewer) -> None:
    """Close notification pop-ups (e.g. napari's PyQt5 deprecation notice) over the canvas."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()


def _shot(viewer, path: Path, status=None) -> None:
    _dismiss_toasts(viewer)
    viewer.reset_view()
    from napari.qt import get_qapp

    viewer.help = ""  # the key-binding hints would overlap the hovered cell's row
    for value in (None, status):  # let the status bar re-lay out before the text is set
        if value is not None:
            viewer.status = value
        for _ in range(10):
            get_qapp().processEvents()
            time.sleep(0.02)
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")


def _half_done(widget) -> bool:
    """Whether the widget's napari progress bar is at least half full (or the job ended)."""
    pbar = widget._pbar
    if not widget.busy:
        return True
    return pbar is not None and pbar.total and pbar.n >= pbar.total // 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args(argv)
    _ensure_display()

    from napari.qt import get_qapp

    import napari
    from allnet_core.synthetic import write_cnmc_dataset

    args.out.mkdir(parents=True, exist_ok=True)
    app = get_qapp()
    viewer = napari.Viewer(title="napari-allnet")
    viewer.window._qt_window.resize(*WINDOW)
    viewer.open_sample("napari-allnet", "bccd_smear")
    image = viewer.layers[-1]

    # Segment cells
    dock, seg = viewer.window.add_plugin_dock_widget("napari-allnet", "Segment cells")
    seg.image.value = image
    seg.run()
    _wait(app, seg)
    _shot(viewer, args.out / "napari_segment.png")
    viewer.window.remove_dock_widget(dock)

    # Train ALLNet on a synthetic C-NMC-like dataset, quick profile
    work = Path(tempfile.mkdtemp(prefix="allnet-screens-"))
    data = write_cnmc_dataset(work / "data", subjects=12, cells_per_subject=12, size=64)
    dock, train = viewer.window.add_plugin_dock_widget("napari-allnet", "Train ALLNet")
    train.data.value = data
    train.out.value = work / "run"
    train.profile.value = "quick"
    train.fields["epochs"].value = args.epochs
    train.fields["per_class"].value = 96
    train.start()
    # half-way through, with the activity dock open: the progress bar and its count
    _wait(app, train, until=lambda: _half_done(train))
    viewer.window._status_bar._toggle_activity_dock(True)
    _wait(app, train, until=lambda: True)
    _shot(viewer, args.out / "napari_train_progress.png")
    viewer.window._status_bar._toggle_activity_dock(False)
    _wait(app, train)
    if not train.status.value.startswith("Done"):
        print(f"training did not finish: {train.status.value}", file=sys.stderr)
        return 1
    _shot(viewer, args.out / "napari_train.png")
    viewer.window.remove_dock_widget(dock)

    # Classify cells with the model just trained (the session registry hands it over)
    dock, cls = viewer.window.add_plugin_dock_widget("napari-allnet", "Classify cells")
    cls.image.value = image
    cls.gradcam.value = True
    cls.run()
    _wait(app, cls)
    viewer.layers[f"{image.name} WBC"].visible = False
    viewer.layers[f"{image.name} Grad-CAM"].visible = False
    # hover a cell so that the status bar shows its row of the table
    layer = viewer.layers[f"{image.name} classes"]
    viewer.layers.selection.active = layer
    row = layer.features.iloc[0]
    status = layer.get_status((row["centroid_row"], row["centroid_col"]))
    _wait(app, cls, until=lambda: True)
    _shot(viewer, args.out / "napari_classify.png", status=status)

    # Grad-CAM over the image
    heat = viewer.layers[f"{image.name} Grad-CAM"]
    print(f"Grad-CAM on {image.name}: max {heat.data.max():.3f}")
    if not heat.data.any():
        # this demo model found no evidence inside the real cell: try the synthetic cells
        print("empty heatmap on the BCCD field; trying the synthetic cells")
        for lyr in list(viewer.layers):
            lyr.visible = False
        viewer.open_sample("napari-allnet", "synthetic_cells")
        for name in ("synthetic ALL cell", "synthetic HEM cell"):
            for lyr in viewer.layers:
                lyr.visible = lyr.name == name
            image = viewer.layers[name]
            cls.image.value = image
            cls.run()
            _wait(app, cls)
            heat = viewer.layers[f"{image.name} Grad-CAM"]
            layer = viewer.layers[f"{image.name} classes"]
            print(f"Grad-CAM on {image.name}: max {heat.data.max():.3f}")
            if heat.data.any():
                break
    heat.visible = True
    layer.visible = False
    _wait(app, cls, until=lambda: True)
    _shot(viewer, args.out / "napari_gradcam.png")

    from napari_allnet._session import shutdown_clients

    shutdown_clients()
    viewer.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
