"""The deep-learning worker process: ``python -m allnet_core.worker``.

Classification and training load Keras and its backend. On Linux with Mesa graphics
(Xvfb included) TensorFlow cannot share a process with a Qt OpenGL context (tensorflow
issue 109933), so GUIs such as the napari plugin run that work here, in a child process,
and talk to it through a pipe. The worker calls the same :mod:`allnet_core` functions as
the command line.

Protocol
--------
One JSON object per line, UTF-8, in both directions.

Requests (parent -> worker, on stdin). Every request may carry an ``"id"`` (any JSON
string or number); replies to it carry the same ``"id"``.

``{"op": "ping"}``
    Answered at once, even while a job runs: ``{"kind": "pong", "busy": bool, "pid": int}``.
``{"op": "device_info"}``
    Keras backend and devices (imports the backend):
    ``{"kind": "result", "result": {"keras_backend", "devices", "device_used", ...}}``.
``{"op": "classify", "image_path", "model", "out_dir", "labels_path"?, "tta"?, "gradcam"?,
"batch_size"?, "mode"?}``
    Classify the WBCs of one RGB image file with
    :meth:`allnet_core.inference.Classifier.classify_image`. Without ``labels_path`` the
    image is segmented first (``mode``: ``"auto"``, ``"cells"`` or ``"smear"``). Writes
    ``labels.tif`` (int32), ``cells.csv`` and, with ``gradcam``,
    ``heatmap.tif`` (float32, image-sized) into ``out_dir`` and replies
    ``{"kind": "result", "result": {"labels_path", "table_path", "heatmap_path", "n_cells"}}``.
    The loaded model is kept, so a second request with the same model file does not load
    it again.
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
  stays alive after an error. ``error_type`` is the exception class name; errors that
  are not :class:`~allnet_core.errors.AllnetError` also carry a ``"traceback"``.

Only protocol lines go to stdout: at start the worker moves file descriptor 1 onto
stderr, so prints and C-library output (TensorFlow logs, Keras progress bars) land on
stderr, which the parent keeps for crash reports.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from allnet_core import __version__
from allnet_core.errors import AllnetError, CancelledError, ConfigError
from allnet_core.progress import CancelToken

__all__ = ["JOB_OPS", "Worker", "main"]

#: Operations that run as jobs, one at a time, in the worker's main thread.
JOB_OPS = ("classify", "train", "device_info")
_CONTROL_OPS = ("ping", "cancel", "shutdown")


class Worker:
    """The request loop of the worker process.

    Parameters
    ----------
    inp : text stream
        Where requests arrive, one JSON object per line.
    out : text stream
        Where messages go, one JSON object per line (flushed after each line).
    """

    def __init__(self, inp: IO[str], out: IO[str]):
        self._inp = inp
        self._out = out
        self._out_lock = threading.Lock()
        self._jobs: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._state_lock = threading.Lock()
        self._current: tuple[Any, CancelToken] | None = None
        self._stopping = threading.Event()
        self._cancelled_ids: set[Any] = set()
        self._classifiers: dict[tuple[str, float], Any] = {}
        self._handlers: dict[str, Callable[[dict[str, Any], Callable, CancelToken], dict]] = {
            "classify": self._classify,
            "train": self._train,
            "device_info": self._device_info,
        }

    # ------------------------------------------------------------------ messages
    def send(self, kind: str, **fields: Any) -> None:
        """Write one message line ``{"kind": kind, **fields}``."""
        line = json.dumps({"kind": kind, **fields}, default=_json_default)
        with self._out_lock:
            self._out.write(line + "\n")
            self._out.flush()

    # ------------------------------------------------------------------ loop
    def run(self) -> int:
        """Serve requests until ``shutdown`` or end of input; return the exit code."""
        self.send("ready", pid=os.getpid(), version=__version__)
        reader = threading.Thread(target=self._read_requests, name="allnet-worker-stdin",
                                  daemon=True)
        reader.start()
        while True:
            request = self._jobs.get()
            if request is None:
                return 0
            if self._stopping.is_set():  # shutting down: drop jobs still queued
                self.send("cancelled", id=request.get("id"), op=request["op"],
                          message="the worker is shutting down")
                continue
            self._run_job(request)

    def _read_requests(self) -> None:
        for line in self._inp:
            line = line.strip()
            if not line:
                continue
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("a request must be a JSON object")
            except ValueError as exc:
                self.send("error", id=None, op=None, error_type="ProtocolError",
                          message=f"bad request {line[:200]!r}: {exc}")
                continue
            op = request.get("op")
            rid = request.get("id")
            if op == "ping":
                self.send("pong", id=rid, busy=self._current is not None, pid=os.getpid())
            elif op == "cancel":
                self._cancel(rid)
            elif op == "shutdown":
                break
            elif op in JOB_OPS:
                self._jobs.put(request)
            else:
                known = ", ".join(JOB_OPS + _CONTROL_OPS)
                self.send("error", id=rid, op=op, error_type="ProtocolError",
                          message=f"unknown op {op!r}; known ops: {known}")
        # shutdown or end of input (the parent went away): stop what runs, then exit
        self._stopping.set()
        self._cancel_current()
        self._jobs.put(None)

    def _cancel_current(self) -> None:
        with self._state_lock:
            if self._current is not None:
                self._current[1].cancel()

    def _cancel(self, rid: Any = None) -> None:
        """Cancel job ``rid`` (running or still queued), or the running job if no id."""
        with self._state_lock:
            if rid is not None and (self._current is None or self._current[0] != rid):
                self._cancelled_ids.add(rid)  # not started yet: cancel it when it starts
                return
        self._cancel_current()

    def _run_job(self, request: dict[str, Any]) -> None:
        rid, op = request.get("id"), request["op"]
        token = CancelToken()
        with self._state_lock:
            self._current = (rid, token)
            if self._stopping.is_set() or rid in self._cancelled_ids:
                self._cancelled_ids.discard(rid)
                token.cancel()

        def progress(event: dict[str, Any]) -> None:
            self.send("progress", id=rid, event=event)

        try:
            result = self._handlers[op](request, progress, token)
        except CancelledError as exc:
            self.send("cancelled", id=rid, op=op, message=str(exc))
        except AllnetError as exc:
            self.send("error", id=rid, op=op, error_type=type(exc).__name__, message=str(exc))
        except Exception as exc:  # report, keep serving: one bad job must not kill the worker
            self.send("error", id=rid, op=op, error_type=type(exc).__name__,
                      message=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        else:
            self.send("result", id=rid, op=op, result=result)
        finally:
            with self._state_lock:
                self._current = None

    # ------------------------------------------------------------------ handlers
    def _device_info(self, request, progress, cancel) -> dict[str, Any]:
        from allnet_core.backend import describe_environment

        return describe_environment()

    def _load_classifier(self, model: str):
        from allnet_core.inference import Classifier

        path = Path(model)
        if not path.is_file():
            raise ConfigError(f"model file {model}: no such file")
        key = (str(path.resolve()), path.stat().st_mtime)
        if key not in self._classifiers:
            self._classifiers.clear()  # keep one model resident at a time
            self._classifiers[key] = Classifier.load(path)
        return self._classifiers[key]

    def _classify(self, request, progress, cancel) -> dict[str, Any]:
        import numpy as np
        import tifffile

        from allnet_core.io import read_rgb, write_csv, write_tiff

        image_path = _required(request, "image_path")
        out_dir = Path(_required(request, "out_dir"))
        model = _required(request, "model")
        tta = bool(request.get("tta", False))
        gradcam = bool(request.get("gradcam", False))
        rgb = read_rgb(image_path)
        labels = None
        if request.get("labels_path"):
            labels = np.asarray(tifffile.imread(request["labels_path"]))
            if labels.shape != rgb.shape[:2]:
                raise ConfigError(
                    f"labels {request['labels_path']}: shape {labels.shape} does not match "
                    f"the image {image_path} ({rgb.shape[0]}x{rgb.shape[1]})"
                )
        progress({"kind": "stage", "stage": "loading model", "model": model})
        classifier = self._load_classifier(model)
        progress({"kind": "stage", "stage": "classifying"})
        kwargs: dict[str, Any] = {"labels": labels, "tta": tta, "gradcam": gradcam,
                                  "progress": progress, "cancel": cancel}
        if request.get("batch_size"):
            kwargs["batch_size"] = int(request["batch_size"])
        if request.get("mode"):
            kwargs["mode"] = str(request["mode"])
        res = classifier.classify_image(rgb, **kwargs)
        out_dir.mkdir(parents=True, exist_ok=True)
        labels_path = write_tiff(out_dir / "labels.tif", np.asarray(res.labels, np.int32))
        table_path = write_csv(out_dir / "cells.csv", res.table)
        heatmap_path = None
        if gradcam and getattr(res, "heatmap", None) is not None:
            heatmap_path = write_tiff(out_dir / "heatmap.tif",
                                      np.asarray(res.heatmap, np.float32))
        return {
            "labels_path": str(labels_path),
            "table_path": str(table_path),
            "heatmap_path": None if heatmap_path is None else str(heatmap_path),
            "n_cells": len(res.table),
        }

    def _train(self, request, progress, cancel) -> dict[str, Any]:
        from allnet_core.training import TrainConfig, cross_validate, resume_config

        data = _required(request, "data")
        out = _required(request, "out")
        fields = dict(request.get("config") or {})
        profile = fields.pop("profile", None)
        resume = bool(request.get("resume", False))
        # Like `allnet train`: a profile's values under the given fields; a resumed run
        # starts from its saved config.json.
        if resume:
            config = resume_config(out, profile, **fields)
        else:
            config = TrainConfig.from_profile(profile or "paper", **fields)
        result = cross_validate(data, config, out, progress=progress, cancel=cancel,
                                resume=resume)
        return _run_summary(Path(out), result)


def _run_summary(run_dir: Path, result: Any) -> dict[str, Any]:
    """What the parent needs from a finished run: paths and the report's numbers."""
    return {
        "run_dir": str(run_dir),
        "best_fold": result.best_fold,
        "best_model": str(result.best_model),
        "report": str(result.report),
        "folds": result.folds,
        "holdout": result.holdout,
    }


def _required(request: dict[str, Any], key: str) -> Any:
    value = request.get(key)
    if value in (None, ""):
        raise ConfigError(f"request {request.get('op')!r} needs a {key!r} field")
    return value


def _json_default(o: Any) -> Any:
    """Like :func:`allnet_core.io.json_default`, but anything else becomes its ``str``."""
    from allnet_core.io import json_default

    try:
        return json_default(o)
    except TypeError:
        return str(o)


def _protocol_stdout() -> IO[str]:
    """Keep the real stdout for protocol lines; send everything else written to fd 1 to
    stderr (prints, TensorFlow's C++ logs, Keras progress bars)."""
    sys.stdout.flush()
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(proto_fd, "w", encoding="utf-8", buffering=1)


def main() -> int:
    """Entry point of ``python -m allnet_core.worker``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = _protocol_stdout()
    inp = open(sys.stdin.fileno(), encoding="utf-8", closefd=False)  # noqa: SIM115
    return Worker(inp, out).run()


if __name__ == "__main__":
    sys.exit(main())
