"""Images too large for memory, opened lazily as ``dask.array`` (the partner of :mod:`io`).

:func:`open_rgb_lazy` gives an ``(H, W, 3) uint8`` dask array whose pixels are read only
when a region is computed:

* TIFF and OME-TIFF through tifffile's zarr store (``tifffile.imread(path, aszarr=True)``):
  a tiled TIFF, as slide scanners write, is read tile by tile; of a pyramid, the full
  resolution level is used. An uncompressed TIFF stored in one strip is memory-mapped.
* zarr arrays (a ``.zarr`` folder, or an OME-Zarr group, whose first array is used).
* dask arrays, zarr arrays and numpy arrays as they are (a napari layer's data).
* Other formats (PNG, JPEG, BMP) cannot be read in parts: they are read whole with
  :func:`allnet_core.io.read_rgb`, which works as long as they fit in memory.

The conversion rules are those of :func:`allnet_core.io.read_rgb` (alpha dropped,
channel-first transposed, integer types scaled from their full range), applied per
chunk. Floating-point pixels, whose rescaling needs the whole image, are refused.
``dask`` and ``zarr`` are imported when a function runs, never with ``allnet_core``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from allnet_core.errors import ImageReadError

__all__ = ["LARGE_PIXELS", "image_shape", "is_large_image", "open_rgb_lazy"]

#: Images with more pixels than this (8192 x 8192) are segmented in tiles by default.
LARGE_PIXELS = 8192 * 8192
#: Side of the dask chunks when the file's own chunks are too large or too small.
_CHUNK = 2048


def _tiff_array(path: Path):
    """The full-resolution array of a TIFF, as a zarr array (or a memory map)."""
    import tifffile
    import zarr

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            page = series.pages[0] if series.pages else None
            one_strip = (page is not None and not page.is_tiled
                         and len(page.dataoffsets) == 1 and page.compression == 1)
        if one_strip:
            return tifffile.memmap(path, series=0, level=0, mode="r")
        store = tifffile.imread(path, aszarr=True, series=0, level=0)
        return zarr.open(store, mode="r")
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile raises many types on corrupt input
        raise ImageReadError(path, f"not a readable TIFF file ({exc})") from exc


def _zarr_array(path: Path):
    import zarr

    try:
        z = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise ImageReadError(path, f"not a readable zarr array ({exc})") from exc
    if isinstance(z, zarr.Group):  # OME-Zarr: the first (full-resolution) array
        names = sorted(z.array_keys())
        if not names:
            raise ImageReadError(path, "the zarr group holds no array")
        z = z[names[0]]
    return z


def _source_array(source):
    """The array behind ``source`` (a path or an array-like) and its name for messages."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise ImageReadError(path, "no such file")
        if path.suffix.lower() == ".zarr":
            return _zarr_array(path), path
        if path.suffix.lower() in (".tif", ".tiff"):
            return _tiff_array(path), path
        from allnet_core.io import read_rgb

        return read_rgb(path), path
    return source, "<array>"


def open_rgb_lazy(source, chunk: int = _CHUNK):
    """An image as an ``(H, W, 3) uint8`` dask array, read only where computed.

    Parameters
    ----------
    source : path-like or array-like
        A TIFF, ``.zarr`` or other image file; or a dask, zarr or numpy array (``HxWx3``,
        ``HxWx4`` or channel-first ``3xHxW``).
    chunk : int
        Side of the dask chunks when the storage's own are not 256 to 4096 on a side.

    Returns
    -------
    dask.array.Array

    Raises
    ------
    ImageReadError
        For a missing or unreadable file, grayscale data, stacks, empty or float images.
    """
    import dask.array as da

    array, name = _source_array(source)
    shape = tuple(array.shape)
    if len(shape) == 3 and shape[-1] not in (3, 4) and shape[0] in (3, 4):
        array = da.moveaxis(_as_dask(array, (shape[0], chunk, chunk)), 0, -1)
        shape = tuple(array.shape)
    if len(shape) != 3 or shape[-1] not in (3, 4) or 0 in shape:
        raise ImageReadError(name, f"expected one RGB image (H, W, 3), got shape {shape}")
    dtype = np.dtype(array.dtype)
    if not (dtype == np.uint8 or dtype == np.bool_ or np.issubdtype(dtype, np.integer)):
        raise ImageReadError(name, f"pixel type {dtype}: a large image must have integer "
                             "pixels (convert it to uint8)")
    d = _as_dask(array, (chunk, chunk, shape[-1]))[..., :3]
    if dtype != np.uint8:
        from allnet_core.io import as_rgb_uint8

        d = d.map_blocks(lambda b: as_rgb_uint8(b, name), dtype=np.uint8)
    return d


def _as_dask(array, chunks):
    """``array`` as a dask array: its storage's chunks when they are 256 to 4096 pixels
    on a side (a region then reads only the chunks it touches), else ``chunks``."""
    import dask.array as da

    if isinstance(array, da.Array):
        return array
    own = getattr(array, "chunks", None)
    if (isinstance(own, tuple) and all(isinstance(c, int) for c in own)
            and all(256 <= c <= 4096 for c in own[:2])):
        chunks = own
    return da.from_array(array, chunks=chunks, asarray=False, fancy=False)


def image_shape(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image file or ``.zarr`` folder, reading no pixels.

    Raises
    ------
    ImageReadError
        For a file whose header cannot be read.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".zarr" or suffix in (".tif", ".tiff"):
        return tuple(open_rgb_lazy(path).shape[:2])
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except Exception as exc:
        raise ImageReadError(path, f"not a readable image file ({exc})") from exc


def is_large_image(path: str | os.PathLike, limit: int | None = None) -> bool:
    """Whether an image is segmented in tiles: a ``.zarr`` folder, or over ``limit``
    pixels (default :data:`LARGE_PIXELS`). An unreadable file is not large (reading it
    reports the problem)."""
    limit = LARGE_PIXELS if limit is None else limit
    path = Path(path)
    if path.suffix.lower() == ".zarr" and path.is_dir():
        return True
    if not path.is_file():
        return False
    try:
        h, w = image_shape(path)
    except ImageReadError:
        return False
    return h * w > limit
