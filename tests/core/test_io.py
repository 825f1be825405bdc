"""allnet_core.io: every format, conversion and bad-input kind of read_rgb; atomic writes."""

from __future__ import annotations

import os
import stat

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from PIL import Image

from allnet_core.errors import AllnetError, ImageReadError
from allnet_core.io import atomic_write, find_images, read_rgb, write_json, write_tiff


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (21, 33, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".tiff"])
def test_lossless_formats_round_trip(tmp_path, rgb, suffix):
    path = tmp_path / f"img{suffix}"
    if suffix.startswith(".tif"):
        tifffile.imwrite(path, rgb, photometric="rgb")
    else:
        iio.imwrite(path, rgb)
    out = read_rgb(path)
    assert out.dtype == np.uint8 and out.shape == (21, 33, 3)
    np.testing.assert_array_equal(out, rgb)


def test_jpeg(tmp_path, rgb):
    path = tmp_path / "img.JPG"
    smooth = np.full((32, 32, 3), (200, 100, 50), np.uint8)
    iio.imwrite(path, smooth, extension=".jpg")
    out = read_rgb(path)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - smooth).max() <= 3


def test_rgba_drops_alpha(tmp_path, rgb):
    rgba = np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])
    path = tmp_path / "rgba.png"
    iio.imwrite(path, rgba)
    np.testing.assert_array_equal(read_rgb(path), rgb)


def test_palette_image_is_expanded(tmp_path):
    palette_img = Image.new("P", (10, 6))
    palette_img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    pixels = np.zeros((6, 10), np.uint8)
    pixels[:, 5:] = 2
    palette_img.putdata(pixels.ravel().tolist())
    path = tmp_path / "palette.png"
    palette_img.save(path)
    out = read_rgb(path)
    assert out.shape == (6, 10, 3)
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 9], [0, 0, 255])


def test_16bit_is_rescaled(tmp_path):
    a = np.zeros((4, 4, 3), np.uint16)
    a[0, 0] = 65535
    a[1, 1] = 257 * 100
    path = tmp_path / "deep.tif"
    tifffile.imwrite(path, a, photometric="rgb")
    out = read_rgb(path)
    assert out.dtype == np.uint8
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[1, 1]) == (100, 100, 100)
    assert out[2, 2].max() == 0



def test_float_unit_range_scaled_by_255(tmp_path):
    a = np.zeros((3, 3, 3), np.float32)
    a[0, 0] = 1.0
    a[1, 1] = 0.5
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, a, photometric="rgb")
    out = read_rgb(path)
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[1, 1]) == (128, 128, 128)


def test_float_other_range_min_max(tmp_path):
    a = np.linspace(-10, 1000, 27, dtype=np.float64).reshape(3, 3, 3)
    path = tmp_path / "f64.tif"
    tifffile.imwrite(path, a, photometric="rgb")
    out = read_rgb(path)
    assert out.min() == 0 and out.max() == 255


def test_channel_first_tiff(tmp_path, rgb):
    path = tmp_path / "cf.tif"
    tifffile.imwrite(path, np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_rgb(path), rgb)


def _assert_error(path, *words):
    with pytest.raises(ImageReadError) as info:
        read_rgb(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg.lower(), msg
    assert isinstance(info.value, AllnetError) and isinstance(info.value, ValueError)


def test_grayscale_png_rejected(tmp_path):
    path = tmp_path / "gray.png"
    iio.imwrite(path, np.zeros((5, 5), np.uint8))
    _assert_error(path, "grayscale")


def test_grayscale_tiff_rejected(tmp_path):
    path = tmp_path / "gray.tif"
    tifffile.imwrite(path, np.zeros((5, 5), np.uint16))
    _assert_error(path, "grayscale")


def test_multipage_tiff_rejected(tmp_path, rgb):
    path = tmp_path / "stack.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(rgb, photometric="rgb")
        tw.write(rgb, photometric="rgb")
    _assert_error(path, "multi-page")


def test_volume_tiff_rejected(tmp_path):
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, np.zeros((4, 5, 6, 3), np.uint8), photometric="rgb")
    _assert_error(path)


def test_animated_gif_rejected(tmp_path, rgb):
    path = tmp_path / "anim.gif"
    iio.imwrite(path, np.stack([rgb, 255 - rgb]), extension=".gif")
    _assert_error(path, "stack")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.bmp"
    path.write_bytes(b"")
    _assert_error(path, "empty")


def test_missing_file(tmp_path):
    _assert_error(tmp_path / "nope.png", "no such file")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a PNG\n")
    _assert_error(path, "not a readable")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_truncated(tmp_path, suffix):
    rng = np.random.default_rng(1)
    full = tmp_path / f"full{suffix}"
    iio.imwrite(full, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), extension=suffix)
    cut = tmp_path / f"cut{suffix}"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    _assert_error(cut)


@pytest.mark.realdata
def test_real_cnmc_bmp_header_variants(cnmc_dir, cnmc_prelim_dir):
    train = sorted(cnmc_dir.rglob("*.bmp"))[0]
    prelim = cnmc_prelim_dir / "1105.bmp"
    assert train.stat().st_size == 608_454
    assert prelim.stat().st_size == 608_538
    for path in (train, prelim):
        img = read_rgb(path)
        assert img.shape == (450, 450, 3) and img.dtype == np.uint8
        black = (img == 0).all(axis=-1).mean()
        assert 0.5 < black < 0.98, f"{path.name}: black fraction {black:.2f}"


@pytest.mark.realdata
def test_real_bccd_jpeg(bccd_dir):
    img = read_rgb(bccd_dir / "JPEGImages" / "BloodImage_00000.jpg")
    assert img.shape == (480, 640, 3)


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "report.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half written")
        raise RuntimeError("crash")
    assert target.read_text().strip().startswith("{")
    assert "1" in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_write_json_numpy_values(tmp_path):
    import json

    path = write_json(tmp_path / "a" / "m.json", {"x": np.float32(0.5), "n": np.int64(3),
                                                  "arr": np.arange(2)})
    assert json.loads(path.read_text()) == {"x": 0.5, "n": 3, "arr": [0, 1]}


def test_write_tiff_and_find_images(tmp_path, rgb):
    write_tiff(tmp_path / "sub" / "x.tif", rgb, photometric="rgb")
    (tmp_path / "note.txt").write_text("x")
    iio.imwrite(tmp_path / "y.PNG", rgb)
    found = find_images(tmp_path)
    assert [p.name for p in found] == ["x.tif", "y.PNG"]
    np.testing.assert_array_equal(read_rgb(found[0]), rgb)


def test_cmyk_jpeg_is_converted_not_inverted(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, :8] = (200, 30, 40)
    rgb[:, 8:] = (20, 180, 90)
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    out = read_rgb(path)
    assert out.shape == (16, 16, 3)
    assert np.abs(out[4:12, [2, 13]].astype(int) - rgb[4:12, [2, 13]]).max() <= 12


def test_decompression_bomb_names_size_and_limit(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    iio.imwrite(path, np.zeros((120, 100, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 12,000 px > twice the limit
    with pytest.raises(ImageReadError, match=r"huge\.png: too large.*12000 pixels.*10,000"):
        read_rgb(path)


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == mode
