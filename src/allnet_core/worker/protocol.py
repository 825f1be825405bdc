"""The worker's JSON-lines protocol: op names, message kinds, line encoding and decoding.

One JSON object per line, UTF-8, in both directions. Both ends of the pipe use this
module: :mod:`allnet_core.worker.server` (the worker process) and
:mod:`allnet_core.worker.client` (the parent, e.g. the napari plugin).

Requests (parent -> worker, on stdin). Every request may carry an ``"id"`` (any JSON
string or number); replies to it carry the same ``"id"``.

``{"op": "ping"}``
    Answered at once, even while a job runs: ``{"kind": "pong", "busy": bool, "pid": int}``.
``{"op": "device_info"}``
    Keras backend and devices (imports the backend):
    ``{"kind": "result", "result": {"keras_backend", "devices", "device_used", ...}}``.
``{"op": "classify", "image_path", "model", "out_dir", "labels_path"?, "tta"?, "gradcam"?,
"batch_size"?, "mode"?, "uncertain"?}``
    Classify the WBCs of one RGB image file with
    :meth:`allnet_core.inference.Classifier.classify_image`. Without ``labels_path`` the
    image is segmented first (``mode``: ``"auto"``, ``"cells"`` or ``"smear"``). Writes
    ``labels.tif`` (int32), ``cells.csv`` and, with ``gradcam``,
    ``heatmap.tif`` (float32, image-sized) into ``out_dir`` and replies
    ``{"kind": "result", "result": {"labels_path", "table_path", "heatmap_path", "n_cells",
    "assessment"}}`` (``assessment``: the model card's ``headline``, ``warnings``,
    ``at_chance``, ``untested``; ``uncertain``: the band ``[low, high]`` of calibrated P(ALL)
    called uncertain). The loaded model and its card are kept, so a second request with the
    same model file does not load it again.
``{"op": "classify", "image_paths": [...], "model", "out_dir", "tta"?, "gradcam"?,
"batch_size"?, "mode"?, "threshold"?, "uncertain"?, "skip_bad"?}``
    Classify the cells of many files and folders with
    :func:`allnet_core.inference.classify_images` (cells pooled into full batches, as
    ``allnet classify`` does). Writes ``cells.csv``, ``per_image.csv``, ``per_subject.csv``
    and, with ``gradcam``, overlays under ``out_dir/gradcam``; replies
    ``{"kind": "result", "result": {"table_path", "per_image_path", "per_subject_path",
    "gradcam_paths", "n_cells", "n_images", "problems", "assessment"}}``.
``{"op": "train", "data", "out", "config": {TrainConfig fields}, "resume"?}``
    Run :func:`allnet_core.training.cross_validate` on the dataset folder ``data`` into the
    run folder ``out`` (``resume`` continues a cancelled or killed run). ``config`` may
    name a ``profile``; the given fields override that profile's values, as with
    ``allnet train``. Replies
    ``{"kind": "result", "result": {"run_dir", "best_fold", "best_model", "report",
    "folds", "holdout"}}`` (``folds``: each fold's validation metrics; ``holdout``: the
    best fold's hold-out metrics).
``{"op": "cancel", "id"?}``
    Ask job ``id`` (or, without an id, the running job) to stop at its next check
    (between batches); a job still queued is cancelled when it starts. The job then
    replies ``{"kind": "cancelled"}``; completed work (epochs, folds) stays on disk.
``{"op": "shutdown"}``
    Cancel any running job and exit (closing stdin does the same).

Messages (worker -> parent, on stdout):

* ``{"kind": "ready", "pid", "version"}`` once at start;
* ``{"kind": "progress", "id", "event": {...}}`` for every :mod:`allnet_core.progress`
  event of the running job (``event["kind"]`` is e.g. ``"epoch_end"``);
* ``{"kind": "result", "id", "op", "result": {...}}`` when a job ends well;
* ``{"kind": "cancelled", "id", "op", "message"}`` when it stopped on request;
* ``{"kind": "error", "id", "op", "message", "error_type"}`` when it failed. The worker
  stays alive after an error. ``error_type`` is the exception class name. A user's
  mistake (an :class:`~allnet_core.errors.AllnetError`, or an operating-system error such
  as a read-only or full output folder) is a message naming the file or field; only
  other errors (bugs) also carry a ``"traceback"``.

Any byte sequence on stdin is safe. A line that is not UTF-8, not JSON, nested too deep,
not an object, or whose ``op`` is not a string or whose ``id`` is not a string or number
gets ``{"kind": "error", "error_type": "ProtocolError", "id": null, ...}``; a job request
with a field of the wrong type or out of range gets an error naming the field. The worker
exits with status 0 when its stdin closes.

Only protocol lines go to stdout: at start the worker moves file descriptor 1 onto
stderr, so prints and C-library output (TensorFlow logs, Keras progress bars) land on
stderr, which the parent keeps for crash reports.
"""

from __future__ import annotations

import json
import math
from typing import Any

from allnet_core.errors import ProtocolError

__all__ = [
    "CONTROL_OPS",
    "JOB_OPS",
    "TERMINAL_KINDS",
    "WORKER_MODULE",
    "decode_message",
    "decode_request",
    "encode_message",
    "encode_request",
    "json_default",
]

#: The module that ``python -m`` runs as the worker process.
WORKER_MODULE = "allnet_core.worker"
#: Operations that run as jobs, one at a time, in the worker's main thread.
JOB_OPS = ("classify", "train", "device_info")
#: Operations answered at once by the worker's reader thread, even while a job runs.
CONTROL_OPS = ("ping", "cancel", "shutdown")
#: Message kinds that end a job: exactly one of them answers every job request.
TERMINAL_KINDS = ("result", "error", "cancelled")


def json_default(o: Any) -> Any:
    """Like :func:`allnet_core.io.json_default`, but anything else becomes its ``str``."""
    from allnet_core.io import json_default as io_default

    try:
        return io_default(o)
    except TypeError:
        return str(o)


def encode_message(kind: str, **fields: Any) -> str:
    """The line (without newline) of the worker's message ``{"kind": kind, **fields}``.

    NumPy values, paths and the like are converted with :func:`json_default`.
    """
    return json.dumps({"kind": kind, **fields}, default=json_default)


def decode_request(line: str | bytes) -> dict[str, Any]:
    """The request object of one input line (text, or bytes that must be UTF-8).

    Raises
    ------
    ProtocolError
        (a :class:`ValueError`) naming what is wrong: not UTF-8, not JSON, nested too
        deep, not an object, an ``op`` that is not a string, an ``id`` that is not a string
        or a finite number.
    """
    if isinstance(line, bytes | bytearray):
        try:
            line = bytes(line).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"bad request {bytes(line[:120])!r}: not UTF-8 text "
                                f"({exc.reason} at byte {exc.start})") from None
    shown = repr(line[:120]) + ("..." if len(line) > 120 else "")
    try:
        request = json.loads(line)
    except RecursionError:
        raise ProtocolError(f"bad request {shown}: JSON nested too deeply") from None
    except ValueError as exc:
        raise ProtocolError(f"bad request {shown}: not JSON ({exc})") from None
    if not isinstance(request, dict):
        raise ProtocolError(f"bad request {shown}: a request must be a JSON object, got "
                            f"{type(request).__name__}")
    op, rid = request.get("op"), request.get("id")
    if not isinstance(op, str | None):
        raise ProtocolError(f"bad request {shown}: 'op' must be a string, got {op!r:.60}")
    if not (rid is None or isinstance(rid, str)
            or (isinstance(rid, int | float) and not isinstance(rid, bool)
                and math.isfinite(rid))):
        raise ProtocolError(f"bad request {shown}: 'id' must be a string or a finite "
                            f"number, got {rid!r:.60}")
    return request


def encode_request(request: dict[str, Any]) -> str:
    """The line (without newline) of one request to the worker."""
    return json.dumps(request)


def decode_message(line: str) -> Any:
    """The message of one line the worker wrote; :class:`ValueError` if it is not JSON."""
    return json.loads(line)
