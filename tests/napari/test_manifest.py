"""The plugin through its npe2 manifest: validation, widgets, samples, lazy imports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from npe2 import PluginManifest

WIDGETS = ("Segment cells", "Classify cells", "Train ALLNet")
SAMPLES = ("synthetic_smear", "synthetic_cells", "bccd_smear")


def test_manifest_is_valid_and_imports():
    manifest = PluginManifest.from_distribution("napari-allnet")
    manifest.validate_imports()  # every python_name resolves
    names = {w.display_name for w in manifest.contributions.widgets}
    assert names == set(WIDGETS)
    assert {s.key for s in manifest.contributions.sample_data} == set(SAMPLES)
    (writer,) = manifest.contributions.writers
    assert writer.layer_types == ["labels"] and writer.filename_extensions == [".csv"]


def test_npe2_validate_cli():
    proc = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-allnet"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout


def test_import_is_light():
    """Importing the plugin and its widget modules loads no deep-learning framework."""
    code = (
        "import sys, napari_allnet, napari_allnet._segment_widget, "
        "napari_allnet._classify_widget, napari_allnet._train_widget, "
        "napari_allnet._sample_data, napari_allnet._writer, allnet_core.training; "
        "bad = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", WIDGETS)
def test_open_widget_through_manifest(make_napari_viewer, name):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-allnet", name)
    assert dock is not None and widget is not None
    assert type(widget).__module__.startswith("napari_allnet.")


def test_open_samples(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-allnet", "synthetic_smear")
    image, gt = viewer.layers["synthetic smear"], viewer.layers["synthetic smear ground truth"]
    assert image.rgb and image.data.shape[-1] == 3
    ids = set(np.unique(gt.data)) - {0}
    assert ids and set(gt.features["label"]) == ids
    assert set(gt.features["class"]) <= {"ALL", "HEM"}

    viewer.open_sample("napari-allnet", "synthetic_cells")
    for name in ("synthetic ALL cell", "synthetic HEM cell"):
        layer = viewer.layers[name]
        assert layer.rgb and layer.data.dtype == np.uint8
        assert (layer.data[0, 0] == 0).all()  # C-NMC-like black background

    viewer.open_sample("napari-allnet", "bccd_smear")
    bccd = viewer.layers["BCCD BloodImage_00000"]
    assert bccd.data.shape == (480, 640, 3) and bccd.rgb


def test_bccd_sample_ships_with_licence():
    from importlib.resources import files

    data = files("napari_allnet") / "data"
    assert "MIT License" in (data / "LICENSE-BCCD").read_text()
    assert "BCCD" in (data / "README.md").read_text()
