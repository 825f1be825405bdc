"""Reading RGB images and writing result files atomically.

``read_rgb`` is the one entry point for image files everywhere in allnet_core: every
module, the CLI and the napari plugin read pixels through it, so every format and every
conversion rule below holds for all of them.

Conversions (documented contract of :func:`read_rgb`):

* RGBA (and LA-free 4-channel) images: the alpha channel is dropped, colours are kept as
  stored (no compositing onto a background).
* Palette (indexed) images are expanded to RGB through their palette.
* 16-bit integer images are scaled from their dtype's full range to 0-255
  (``round(x * 255 / 65535)``); other integer types likewise from their full range.
* Floating-point images with values in [0, 1] are scaled by 255; any other finite float
  image is min-max rescaled to 0-255. NaN or infinite values are an error.
* TIFF files stored channel-first (3xHxW) are transposed to HxWx3.
* CMYK JPEGs are converted to RGB by Pillow (inverted Adobe CMYK included).
* Images over Pillow's decompression-bomb limit are refused with their size and the limit.
* Grayscale images, stacks (multi-page TIFF, animated GIF/PNG, 3-D volumes), empty,
  truncated and non-image files raise :class:`~allnet_core.errors.ImageReadError`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from allnet_core.errors import ImageReadError, OutputError

__all__ = [
    "IMAGE_SUFFIXES",
    "as_rgb_uint8",
    "atomic_write",
    "check_output_dir",
    "check_output_file",
    "find_images",
    "read_rgb",
    "write_csv",
    "write_image",
    "write_json",
    "write_text",
    "write_tiff",
]

#: File suffixes (lower case) that :func:`find_images` treats as images.
IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
_TIFF_SUFFIXES = (".tif", ".tiff")


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an ``HxWx3`` ``uint8`` RGB array.

    Parameters
    ----------
    path : str or path-like
        A BMP (both C-NMC header variants), PNG, JPEG or TIFF file.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(H, W, 3)``.

    Raises
    ------
    ImageReadError
        If the file is missing, empty, truncated, not an image, grayscale or a stack.
        The message names the file and the problem.

    Examples
    --------
    >>> rgb = read_rgb("UID_11_1_1_all.bmp")  # doctest: +SKIP
    >>> rgb.shape, rgb.dtype  # doctest: +SKIP
    ((450, 450, 3), dtype('uint8'))
    """
    p = Path(path)
    if not p.exists():
        raise ImageReadError(p, "no such file")
    if p.is_dir():
        raise ImageReadError(p, "is a folder, not an image file")
    if p.stat().st_size == 0:
        raise ImageReadError(p, "the file is empty (0 bytes)")
    if p.suffix.lower() in _TIFF_SUFFIXES:
        data = _read_tiff(p)
    else:
        data = _read_with_imageio(p)
    return as_rgb_uint8(data, source=p)


def _read_tiff(p: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            if len(tif.series) == 0:
                raise ImageReadError(p, "the TIFF holds no image")
            if len(tif.series) > 1 or len(tif.pages) > 1:
                raise ImageReadError(
                    p, f"multi-page TIFF ({len(tif.pages)} pages); expected a single RGB image"
                )
            return tif.series[0].asarray()
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile raises many types on corrupt input
        raise ImageReadError(p, f"not a readable TIFF file ({exc})") from exc


def _read_with_imageio(p: Path) -> np.ndarray:
    import imageio.v3 as iio

    kwargs = {"mode": "RGB"} if _pillow_mode(p) == "CMYK" else {}
    try:
        # index=None reads every frame of an animation, so stacks are detected below.
        return np.asarray(iio.imread(p, index=None, plugin="pillow", **kwargs))
    except Exception as exc:  # imageio/Pillow raise OSError, ValueError, SyntaxError...
        raise ImageReadError(p, f"not a readable image file ({exc})") from exc


def _pillow_mode(p: Path) -> str | None:
    """Pillow's mode of ``p`` (``"CMYK"`` needs converting), or None if Pillow cannot tell.

    Opening reads the header only. An image over Pillow's decompression-bomb limit is
    refused here with its size and the limit, rather than behind imageio's generic error.
    """
    from PIL import Image

    try:
        with Image.open(p) as im:
            return im.mode
    except Image.DecompressionBombError as exc:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageReadError(
            p, f"too large to read whole ({exc}); the limit is {limit:,} pixels. Save the "
            "image as a tiled TIFF, or crop it into fields"
        ) from exc
    except Exception:  # not an image Pillow knows: imageio reports the problem
        return None


def as_rgb_uint8(data: np.ndarray, source: str | os.PathLike = "<array>") -> np.ndarray:
    """Convert an image array to ``HxWx3 uint8`` following :func:`read_rgb`'s rules.

    Parameters
    ----------
    data : numpy.ndarray
        Image data as read from a file or taken from a napari layer.
    source : str or path-like
        Named in error messages.

    Raises
    ------
    ImageReadError
        For grayscale data, stacks, empty arrays and non-finite floats.
    """
    a = np.asarray(data)
    if a.size == 0:
        raise ImageReadError(source, f"the image is empty (shape {a.shape})")
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (1, 2)):
        raise ImageReadError(
            source, f"grayscale image (shape {a.shape}); an RGB colour image is needed"
        )
    if a.ndim == 3 and a.shape[-1] not in (3, 4) and a.shape[0] in (3, 4):
        a = np.moveaxis(a, 0, -1)  # channel-first TIFF
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ImageReadError(
            source,
            f"expected a single RGB image, got an array of shape {a.shape} "
            "(a stack, a volume or an unsupported channel layout)",
        )
    a = a[..., :3]
    return np.ascontiguousarray(_to_uint8(a, source))


def _to_uint8(a: np.ndarray, source: str | os.PathLike) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        f = (a.astype(np.float32) - info.min) * (255.0 / (float(info.max) - info.min))
        return np.rint(f).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise ImageReadError(source, "the image holds NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0.0 and hi <= 1.0:
            f = a.astype(np.float32) * 255.0
        elif hi > lo:
            f = (a.astype(np.float32) - lo) * (255.0 / (hi - lo))
        else:
            f = np.zeros(a.shape, np.float32)
        return np.rint(np.clip(f, 0, 255)).astype(np.uint8)
    raise ImageReadError(source, f"unsupported pixel type {a.dtype}")


def find_images(root: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files under ``root`` (sorted), by suffix (see :data:`IMAGE_SUFFIXES`)."""
    root = Path(root)
    pattern = "**/*" if recursive else "*"
    return sorted(
        p for p in root.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


# --------------------------------------------------------------------------- writing


def check_output_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Check, before any work starts, that ``path`` is or can become a writable folder.

    Nothing is created: the nearest existing folder on the way to ``path`` is probed by
    creating and deleting a hidden temporary file in it, so a read-only disk, a missing
    permission or a full inode table is found now rather than after hours of work.

    Parameters
    ----------
    path : path-like
        The output folder.
    what : str
        How the user named it (``"--out"``), for the message.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    OutputError
        ``path`` (or a folder on its way) is a file, or the folder cannot be written.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(errno.ENOTDIR, f"{what} names a file, not a folder", str(p))
    _probe_writable(_nearest_existing(p), what)
    return p


def check_output_file(path: str | os.PathLike, what: str = "--out") -> Path:
    """Check, before any work starts, that the file ``path`` can be written.

    ``path`` must not be a folder, and its folder must be (or can become) writable
    (see :func:`check_output_dir`). Nothing is created.

    Raises
    ------
    OutputError
        ``path`` is a folder, a file stands where its folder should be, or the folder
        cannot be written.
    """
    p = Path(path)
    if p.is_dir():
        raise OutputError(errno.EISDIR, f"{what} names a folder, not a file", str(p))
    check_output_dir(p.parent, what=f"the folder of {what}")
    return p


def _nearest_existing(p: Path) -> Path:
    """``p`` or its nearest ancestor that exists; an error if that one is a file."""
    q = p.absolute()
    while not q.exists() and q != q.parent:
        q = q.parent
    if not q.is_dir():
        raise OutputError(errno.ENOTDIR, f"is a file, not a folder (on the way to {p})", str(q))
    return q


def _probe_writable(folder: Path, what: str) -> None:
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".allnet-probe.")
    except OSError as exc:
        raise OutputError(exc.errno or errno.EACCES,
                          f"cannot write in this folder ({exc.strerror or exc}), needed for "
                          f"{what}", str(folder)) from exc
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    A crash, a full disk or an exception inside the block never leaves a half-written
    file under the real name: the temporary file is removed and ``path`` keeps its old
    content, if any. An operating-system error (a full disk, a read-only folder) is raised
    as :class:`~allnet_core.errors.OutputError` naming ``path``.

    Examples
    --------
    >>> with atomic_write("model.keras") as tmp:  # doctest: +SKIP
    ...     model.save(tmp)
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.",
                                   suffix=path.suffix)
    except OSError as exc:
        raise _output_error(exc, path) from exc
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the user's usual mode
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a read-only folder: name the file being written
        tmp.unlink(missing_ok=True)
        raise _output_error(exc, path) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _output_error(exc: OSError, path: Path) -> OSError:
    """``exc`` as an :class:`OutputError` naming ``path`` (the real name being written),
    when it is an operating-system error with an error number; else ``exc`` itself."""
    if isinstance(exc, OutputError) or exc.errno is None:
        return exc
    return OutputError(exc.errno, exc.strerror or str(exc), str(path))


def _umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (numpy scalars allowed)."""
    return write_text(path, json.dumps(obj, indent=2, default=json_default) + "\n")


def json_default(o: Any) -> Any:
    """``default=`` hook for :func:`json.dumps`: numpy scalars and arrays, paths."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def write_csv(path: str | os.PathLike, table) -> Path:
    """Write a pandas DataFrame to CSV atomically, without its index."""
    with atomic_write(path) as tmp:
        table.to_csv(tmp, index=False)
    return Path(path)


def write_tiff(path: str | os.PathLike, array: np.ndarray, **kwargs) -> Path:
    """Write an array as a (zlib-compressed) TIFF atomically."""
    import tifffile

    kwargs.setdefault("compression", "zlib")
    with atomic_write(path) as tmp:
        tifffile.imwrite(tmp, array, **kwargs)
    return Path(path)


def write_image(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write a uint8 image (PNG, BMP, JPEG... by suffix; TIFF via tifffile) atomically."""
    path = Path(path)
    if path.suffix.lower() in _TIFF_SUFFIXES:
        return write_tiff(path, rgb, photometric="rgb" if rgb.ndim == 3 else None)
    import imageio.v3 as iio

    with atomic_write(path) as tmp:
        iio.imwrite(tmp, rgb, extension=path.suffix.lower())
    return path
