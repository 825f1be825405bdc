"""The cached feed's store: a fold's balanced, augmented images built once as ``uint8`` on
disk.

The paper augments once to a fixed, balanced training set. :func:`build_cache` does the
same for one fold: every row of the fold's plan (a source file and its augmentation
parameters) is read, augmented, resized to the model input and written as ``uint8`` into
one ``.npy`` file of shape ``(N, S, S, 3)`` (``numpy.load(path, mmap_mode="r")`` reads
it). Every epoch then only reads rows back (:class:`~allnet_core.feed.CachedFeed`): no
decoding, augmenting or resizing.

Built in chunks, in parallel, resumable
---------------------------------------
Rows are built in chunks of at most 16 MiB and 256 rows by ``workers`` processes
(``spawn``-ed, so the parent's threads and Keras backend are never forked; ``workers=1``
builds in the calling thread). Augmentation is numpy/scipy/scikit-image code that holds
Python's GIL much of the time, so threads would not scale. Each chunk is written at its
place in the file and ``fsync``-ed; then the record beside the file (``<name>.json``,
written atomically) lists it as done, and a ``cache`` progress event reports it. A killed
build continues with the chunks not listed. The record's ``complete: true`` is the atomic
completion marker.

A cache is reused only when its record's *fingerprint* matches: a SHA-256 of the input
size and, for every row, the source file's path, size and modification time and the
augmentation parameters. Another plan, another seed, another input size or a changed
file gives another fingerprint, and the cache is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from allnet_core.errors import CancelledError, ConfigError, DatasetError
from allnet_core.feed._samples import augment_sample, model_input_uint8, read_sample
from allnet_core.progress import CancelLike, ProgressCallback, emit

__all__ = ["CacheInfo", "build_cache", "cache_fingerprint", "is_complete", "read_cache_header"]

#: Bump when the cache's content for the same inputs would change.
_FORMAT = 1
_CHUNK_BYTES = 16 * 2**20
_CHUNK_ROWS = 256


@dataclass(frozen=True)
class CacheInfo:
    """A complete cache: ``path`` (``.npy``), ``shape`` ``(N, S, S, 3)``, the byte
    ``offset`` of row 0, its ``fingerprint``, whether it was ``reused`` as found, and the
    ``seconds`` building took (0 when reused)."""

    path: Path
    shape: tuple[int, int, int, int]
    offset: int
    fingerprint: str
    reused: bool
    seconds: float

    @property
    def row_bytes(self) -> int:
        """Bytes of one image."""
        return int(np.prod(self.shape[1:]))


def record_path(path: str | os.PathLike) -> Path:
    """The record beside a cache file: ``train_cache.npy`` -> ``train_cache.json``."""
    return Path(path).with_suffix(".json")


def is_complete(path: str | os.PathLike, missing_ok: bool = False) -> bool:
    """Whether the record beside the cache ``path`` marks it complete (``missing_ok``: a
    cache without a record, e.g. one made by hand, counts as complete)."""
    try:
        return bool(json.loads(record_path(path).read_text(encoding="utf-8"))["complete"])
    except FileNotFoundError:
        return missing_ok
    except (OSError, ValueError, KeyError, TypeError):
        return False


def cache_fingerprint(paths: Sequence[str], params: Sequence[Any], input_size: int) -> str:
    """SHA-256 (hex) of what a cache holds: input size, and per row the source file
    (path, size, modification time) and its augmentation parameters."""
    h = hashlib.sha256(json.dumps({"format": _FORMAT, "input_size": int(input_size),
                                   "rows": len(paths)}).encode())
    for path, p in zip(paths, params, strict=True):
        try:
            st = os.stat(path)
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read the image ({exc})") from exc
        if not isinstance(p, str):
            p = json.dumps(p or {}, sort_keys=True, default=str)
        h.update(json.dumps([path, st.st_size, st.st_mtime_ns, p or "{}"]).encode())
    return h.hexdigest()


def read_cache_header(path: str | os.PathLike) -> tuple[tuple[int, ...], int]:
    """``(shape, offset)`` of a cache file (a ``uint8`` ``.npy`` of square RGB images)."""
    try:
        mm = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable image cache ({exc})") from exc
    shape, offset, dtype = tuple(int(v) for v in mm.shape), int(mm.offset), mm.dtype
    del mm
    if dtype != np.uint8 or len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise DatasetError(f"{path}: not an image cache (dtype {dtype}, shape {shape})")
    return shape, offset


def _write_chunk(job: tuple) -> int:
    """Build rows ``start .. start + len(items)`` and write them into the file (a worker)."""
    path, offset, start, items, size = job
    out = np.empty((len(items), size, size, 3), dtype=np.uint8)
    for j, (source, params) in enumerate(items):
        out[j] = model_input_uint8(augment_sample(read_sample(source), params, source), size)
    with open(path, "r+b") as fh:
        fh.seek(offset + start * size * size * 3)
        fh.write(memoryview(out).cast("B"))
        fh.flush()
        os.fsync(fh.fileno())
    return start


def _open_record(path: Path, fingerprint: str, shape: tuple) -> dict | None:
    """The record of a build of the same content, if the file is there too."""
    try:
        record = json.loads(record_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("fingerprint") != fingerprint or tuple(record.get("shape", ())) != shape:
        return None
    try:
        if read_cache_header(path) != (shape, record["offset"]):
            return None
    except (DatasetError, KeyError):
        return None
    return record


def _new_file(path: Path, fingerprint: str, shape: tuple, chunk: int) -> dict:
    """Create an empty (sparse) cache file and its record, after a check of free disk."""
    from allnet_core.io import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    for old in (path, record_path(path)):
        old.unlink(missing_ok=True)
    need = int(np.prod(shape))
    free = shutil.disk_usage(path.parent).free
    if need > free:
        raise ConfigError(
            f"{path.parent}: the image cache needs {need / 2**30:.1f} GiB but only "
            f"{free / 2**30:.1f} GiB are free; free some space, put the cache elsewhere "
            "(--cache-dir) or read images on the fly (--feed stream)")
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    offset = int(mm.offset)
    del mm
    record = {"format": _FORMAT, "fingerprint": fingerprint, "shape": list(shape),
              "offset": offset, "chunk": chunk, "done": [], "complete": False}
    write_json(record_path(path), record)
    return record


def build_cache(path: str | os.PathLike, paths: Sequence[str], params: Sequence[Any],
                input_size: int, workers: int = 1, progress: ProgressCallback | None = None,
                cancel: CancelLike | None = None, **event: Any) -> CacheInfo:
    """Build (or continue, or reuse) the ``uint8`` image cache at ``path``.

    Parameters
    ----------
    path : path-like
        The ``.npy`` file; its record goes beside it (``.json``).
    paths : sequence of str
        Source image of each row (a row per sample of the plan, repeats allowed).
    params : sequence
        Augmentation parameters of each row (dicts, JSON text, or empty for none), as in
        :func:`~allnet_core.augment.balance_plan`.
    input_size : int
        Side of the cached images (the model input).
    workers : int
        Processes that build chunks (1: in this thread).
    progress : callable, optional
        Receives ``{"kind": "cache", "done": rows, "total": rows, "reused": bool,
        "seconds": ...}`` once at the start and after every chunk, with ``event``'s extra
        fields (e.g. ``fold=1, part="train"``).
    cancel : CancelToken, optional
        Checked between chunks; finished chunks are kept for the next build.

    Returns
    -------
    CacheInfo

    Raises
    ------
    ConfigError
        Not enough free disk (before anything is written).
    DatasetError, ImageReadError
        A source image is missing or unreadable (named).
    CancelledError
        When ``cancel`` was set.
    """
    path = Path(path)
    if len(paths) != len(params) or not len(paths):
        raise DatasetError(f"{path}: a cache needs one or more rows with parameters each")
    size = int(input_size)
    shape = (len(paths), size, size, 3)
    fingerprint = cache_fingerprint(paths, params, size)
    record = _open_record(path, fingerprint, shape)
    if record is not None and record["complete"]:
        emit(progress, "cache", done=shape[0], total=shape[0], reused=True, seconds=0.0,
             **event)
        return CacheInfo(path, shape, record["offset"], fingerprint, True, 0.0)
    if record is None:
        chunk = max(1, min(shape[0], _CHUNK_ROWS, _CHUNK_BYTES // (size * size * 3)))
        record = _new_file(path, fingerprint, shape, chunk)
    started = time.perf_counter()
    _fill(path, record, list(paths), list(params), size, workers, progress, cancel, event,
          started)
    return CacheInfo(path, shape, record["offset"], fingerprint, False,
                     time.perf_counter() - started)


def _fill(path: Path, record: dict, paths: list, params: list, size: int, workers: int,
          progress, cancel, event: dict, started: float) -> None:
    """Build the chunks that ``record`` does not list as done; mark the cache complete."""
    from allnet_core.io import write_json

    n, chunk = record["shape"][0], record["chunk"]
    done = set(record["done"])
    todo = [s for s in range(0, n, chunk) if s not in done]
    jobs = ((str(path), record["offset"], s,
             list(zip(paths[s:s + chunk], params[s:s + chunk], strict=True)), size)
            for s in todo)

    def done_rows() -> int:
        return sum(min(chunk, n - s) for s in record["done"])

    def report(start: int) -> None:
        record["done"].append(start)
        write_json(record_path(path), record)
        emit(progress, "cache", done=done_rows(), total=n, reused=False,
             seconds=time.perf_counter() - started, **event)

    emit(progress, "cache", done=done_rows(), total=n, reused=False, seconds=0.0, **event)
    for start in _run_jobs(jobs, len(todo), workers, cancel):
        report(start)
    record["complete"] = True
    write_json(record_path(path), record)  # the completion marker


def _run_jobs(jobs, count: int, workers: int, cancel):
    """Yield each of ``count`` ``jobs``' start row as it finishes; raise CancelledError
    between jobs."""
    def check() -> None:
        if cancel is not None and cancel.is_set():
            raise CancelledError("building the image cache cancelled (finished chunks kept)")

    if workers <= 1 or count <= 1:
        for job in jobs:
            check()
            yield _write_chunk(job)
        return
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(ProcessPoolExecutor(
            max_workers=min(workers, count), mp_context=get_context("spawn")))
        stack.callback(pool.shutdown, wait=True, cancel_futures=True)
        pending = set()
        queue = iter(jobs)
        for job in queue:  # at most 2 jobs per worker in flight: memory stays bounded
            pending.add(pool.submit(_write_chunk, job))
            if len(pending) >= 2 * workers:
                break
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
            check()
            for job in queue:
                pending.add(pool.submit(_write_chunk, job))
                if len(pending) >= 2 * workers:
                    break
