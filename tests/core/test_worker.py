"""The worker process's JSON-lines protocol (``python -m allnet_core.worker``), no viewer.

Talks to a real worker subprocess through raw pipes, the way any GUI would.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time

import numpy as np
import pytest


class RawWorker:
    """A worker subprocess; every stdout line must be a JSON object."""

    def __init__(self):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "allnet_core.worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
        self.lines: queue.Queue = queue.Queue()
        self.bad_lines: list[str] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr),
                         daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.bad_lines.append(line)
        self.lines.put(None)

    def send(self, obj):
        text = obj if isinstance(obj, str) else json.dumps(obj)
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def next(self, timeout=120.0, where=None):
        """The next message (matching ``where``, a dict of key/values), skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no message matching {where} in {timeout} s; stderr: " + \
                "".join(self.stderr[-20:])
            msg = self.lines.get(timeout=left)
            assert msg is not None, "worker exited; stderr: " + "".join(self.stderr[-20:])
            if where is None or all(msg.get(k) == v for k, v in where.items()):
                return msg

    def close(self):
        if self.proc.poll() is None:
            self.send({"op": "shutdown"})
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def worker():
    w = RawWorker()
    yield w
    w.close()
    assert w.proc.returncode == 0
    assert not w.bad_lines, f"non-JSON lines on the protocol stream: {w.bad_lines[:5]}"


def test_ready_then_ping(worker):
    ready = worker.next()
    assert ready["kind"] == "ready" and ready["pid"] == worker.proc.pid
    worker.send({"op": "ping", "id": 7})
    assert worker.next() == {"kind": "pong", "id": 7, "busy": False, "pid": worker.proc.pid}


@pytest.mark.parametrize("request_text, expected", [
    ("this is not json", "bad request"),
    ("[1, 2]", "must be a JSON object"),
    (json.dumps({"op": "fly", "id": "x"}), "unknown op 'fly'"),
    (json.dumps({"op": "classify", "id": "y", "image_path": "a.png"}), "needs a 'out_dir'"),
])
def test_bad_request_gives_error_and_worker_lives_on(worker, request_text, expected):
    worker.send(request_text)
    msg = worker.next(where={"kind": "error"})
    assert expected in msg["message"]
    worker.send({"op": "ping", "id": "alive"})
    assert worker.next(where={"id": "alive"})["kind"] == "pong"


def test_user_error_is_reported_with_its_type(worker, tmp_path):
    worker.send({"op": "classify", "id": 3, "image_path": str(tmp_path / "missing.png"),
                 "model": str(tmp_path / "missing.keras"), "out_dir": str(tmp_path)})
    msg = worker.next(where={"id": 3})
    assert msg["kind"] == "error" and msg["error_type"] == "ImageReadError"
    assert "missing.png" in msg["message"] and "no such file" in msg["message"]
    assert "traceback" not in msg  # a user error is a message, not a traceback


def test_device_info(worker):
    worker.send({"op": "device_info", "id": "dev"})
    msg = worker.next(where={"id": "dev"}, timeout=300)
    assert msg["kind"] == "result"
    info = msg["result"]
    assert info["keras_backend"] in ("tensorflow", "jax", "torch", "numpy")
    assert info["device_used"] in ("CPU", "GPU") and info["devices"]


@pytest.mark.realdata
def test_classify_writes_result_files(worker, tmp_path, bccd_dir):
    import tifffile

    from allnet_core.model import build_allnet

    model = build_allnet(input_shape=(32, 32, 3), dense_units=8)
    model.save(tmp_path / "m.keras")
    image = bccd_dir / "JPEGImages" / "BloodImage_00000.jpg"
    out = tmp_path / "out"
    worker.send({"op": "classify", "id": "c1", "image_path": str(image),
                 "model": str(tmp_path / "m.keras"), "out_dir": str(out), "gradcam": True})
    kinds = []
    while True:
        msg = worker.next(where={"id": "c1"}, timeout=300)
        kinds.append(msg["kind"])
        if msg["kind"] != "progress":
            break
    assert msg["kind"] == "result", msg
    res = msg["result"]
    labels = tifffile.imread(res["labels_path"])
    assert labels.shape == (480, 640) and labels.dtype == np.int32
    import pandas as pd

    table = pd.read_csv(res["table_path"])
    assert len(table) == res["n_cells"] == len(np.unique(labels)) - 1 >= 1
    assert {"label", "class", "p_all", "area"} <= set(table.columns)
    heat = tifffile.imread(res["heatmap_path"])
    assert heat.shape == (480, 640) and np.isfinite(heat).all()
    assert "progress" in kinds


def test_cancel_stops_training_at_next_batch(worker, tmp_path):
    from allnet_core.synthetic import write_cnmc_dataset

    data = write_cnmc_dataset(tmp_path / "data", subjects=10, cells_per_subject=4, size=32)
    run = tmp_path / "run"
    config = {"input_size": 32, "dense_units": 8, "epochs": 500, "folds": 2, "per_class": 16,
              "batch_size": 4, "lr": 1e-3, "workers": 1}
    worker.send({"op": "train", "id": "t1", "data": str(data), "out": str(run),
                 "config": config})
    # wait until one epoch is complete, then cancel
    while True:
        msg = worker.next(where={"id": "t1"}, timeout=300)
        assert msg["kind"] == "progress", msg
        if msg["event"]["kind"] == "epoch_end":
            break
    worker.send({"op": "ping", "id": "busy?"})
    assert worker.next(where={"id": "busy?"})["busy"] is True
    worker.send({"op": "cancel"})
    t0 = time.monotonic()
    while True:
        msg = worker.next(where={"id": "t1"}, timeout=120)
        if msg["kind"] != "progress":
            break
    assert msg["kind"] == "cancelled", msg
    assert "--resume" in msg["message"]
    assert time.monotonic() - t0 < 60
    state = json.loads((run / "fold_1" / "state.json").read_text())
    assert state["checkpoint_epoch"] >= 1
    assert (run / "fold_1" / state["checkpoint"]).is_file()
    worker.send({"op": "ping", "id": "after"})
    assert worker.next(where={"id": "after"})["busy"] is False


def test_end_of_input_stops_the_worker():
    w = RawWorker()
    assert w.next()["kind"] == "ready"
    w.proc.stdin.close()
    assert w.proc.wait(30) == 0


def test_worker_module_does_not_import_keras():
    code = "import sys, allnet_core.worker; sys.exit('keras' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_client_reports_a_killed_worker(tmp_path):
    """The client (no Qt) turns a SIGKILL into WorkerCrashed with the exit status."""
    import signal

    from allnet_core.worker import WorkerClient, WorkerCrashed

    client = WorkerClient()
    try:
        jobs = client.stream("device_info")
        killer = threading.Timer(1.0, lambda: os.kill(client.pid, signal.SIGKILL))
        killer.start()
        with pytest.raises(WorkerCrashed, match="SIGKILL"):
            list(jobs)
        assert not client.busy
        # the next request starts a fresh worker
        old = client._proc.pid
        assert client.ping()["kind"] == "pong"
        assert client.pid != old
    finally:
        client.close()


def test_classify_many_files_is_the_batch_classification(worker, tmp_path):
    """``image_paths`` runs classify_images: the same table as calling it directly."""
    import pandas as pd

    from allnet_core.inference import Classifier, classify_images
    from allnet_core.model import build_allnet
    from allnet_core.synthetic import write_cnmc_dataset

    data = tmp_path / "cells"
    write_cnmc_dataset(data, subjects=2, cells_per_subject=3, size=48, seed=3)
    model = build_allnet(input_shape=(32, 32, 3), dense_units=8)
    model.save(tmp_path / "m.keras")
    out = tmp_path / "out"
    worker.send({"op": "classify", "id": "many", "image_paths": [str(data)],
                 "model": str(tmp_path / "m.keras"), "out_dir": str(out), "mode": "cells"})
    msg = worker.next(where={"id": "many", "kind": "result"}, timeout=300)
    res = msg["result"]
    cells = pd.read_csv(res["table_path"])
    direct = classify_images(Classifier.load(tmp_path / "m.keras"), [data], mode="cells").cells
    assert res["n_images"] == len(direct) == len(cells) == res["n_cells"]
    assert list(cells["source"]) == [str(s) for s in direct["source"]]
    np.testing.assert_allclose(cells["p_all"], direct["p_all"], atol=1e-5)
    assert pd.read_csv(res["per_subject_path"])["cells"].sum() == len(cells)


def test_client_says_what_killed_the_worker_without_framework_noise():
    """A crash report names the signal and drops TensorFlow's start-up chatter."""
    import signal

    from allnet_core.worker import WorkerClient, WorkerCrashed
    from allnet_core.worker.client import _describe_exit

    assert _describe_exit(-signal.SIGKILL) == "the worker process was killed (signal 9, SIGKILL)"
    assert _describe_exit(-signal.SIGTERM) == "the worker process was killed (signal 15, SIGTERM)"
    assert _describe_exit(3) == "the worker process exited with code 3"

    client = WorkerClient()
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "E0000 00:00:1700000000.1 123 cuda_executor.cc:1228] failed call to cuInit: CUDA "
        "error: UNKNOWN ERROR (303)",
        "I0000 00:00:1700000000.2 123 cuda_platform.cc:51] Could not find cuda drivers on "
        "your machine, GPU will not be used.",
        "I0000 00:00:1700000000.3 123 cpu_feature_guard.cc:210] This TensorFlow binary is "
        "optimized to use available CPU instructions.",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild "
        "TensorFlow with the appropriate compiler flags.",
    ]
    client._stderr.extend([noise[0], "MemoryError: cannot allocate", *noise[1:], ""])
    assert client.stderr_tail() == "MemoryError: cannot allocate"

    try:
        jobs = client.stream("device_info")
        killer = threading.Timer(1.0, lambda: os.kill(client.pid, signal.SIGKILL))
        killer.start()
        with pytest.raises(WorkerCrashed) as info:
            list(jobs)
        message = str(info.value)
        assert message.startswith("the worker process was killed (signal 9, SIGKILL) during "
                                  "'device_info'"), message
        assert "out-of-memory killer" in message  # the likely cause of a SIGKILL
        assert "cuInit" not in message and "cuda drivers" not in message
        assert info.value.returncode == -signal.SIGKILL
    finally:
        client.close()


def test_cancel_during_start_up_stops_the_worker_at_once():
    """A job still in its start-up (framework import, model loading) cannot reach a
    batch check: Cancel stops the worker after start_grace, not cancel_grace."""
    from allnet_core.progress import CancelToken
    from allnet_core.worker import WorkerClient

    client = WorkerClient(cancel_grace=120.0, start_grace=1.0)
    token = CancelToken()
    try:
        threading.Timer(0.5, token.cancel).start()
        t0 = time.monotonic()
        outcome = client.call("device_info", cancel=token)  # a cold worker imports keras
        elapsed = time.monotonic() - t0
        assert outcome["kind"] == "cancelled", outcome
        assert "within 1 s" in outcome["message"]
        assert elapsed < 30, elapsed  # far from the 120 s cancel_grace
        assert not client.busy
        assert client.ping()["kind"] == "pong"  # the next request starts a fresh worker
    finally:
        client.close()


def test_classify_checks_cancel_right_after_loading_the_model(tmp_path):
    """The worker's classify job stops after the model has loaded when Cancel came
    during loading, so a warm worker answers 'cancelled' and stays alive."""
    from allnet_core.errors import CancelledError
    from allnet_core.io import write_image
    from allnet_core.progress import CancelToken
    from allnet_core.worker import jobs

    class SlowModels:
        def load(self, model):
            token.cancel()  # Cancel pressed while the model loads
            return object()

    token = CancelToken()
    write_image(tmp_path / "field.png", np.zeros((16, 16, 3), np.uint8))
    events = []
    request = {"op": "classify", "image_path": str(tmp_path / "field.png"), "model": "m.keras",
               "out_dir": str(tmp_path / "out")}
    with pytest.raises(CancelledError, match="classification cancelled"):
        jobs.classify(request, events.append, token, models=SlowModels())
    assert [e.get("stage") for e in events] == ["loading model"]
    assert not (tmp_path / "out").exists()


def test_a_worker_dying_at_start_is_reported_not_replaced_mid_job():
    """If the worker dies between its start and the job's request, the job reports that
    process's exit; no second worker is started behind the job's back (it used to get
    the request while the client waited on the dead one's output, then 'did not exit')."""
    from allnet_core.worker import WorkerClient, WorkerCrashed

    class DiesAtFirstStart(WorkerClient):
        starts = 0

        def start(self):
            fresh = not self.is_alive()
            super().start()
            if fresh:
                type(self).starts += 1
                if type(self).starts == 1:
                    self._proc.kill()
                    self._proc.wait()

    client = DiesAtFirstStart()
    try:
        with pytest.raises(WorkerCrashed, match=r"killed \(signal 9, SIGKILL\) during 'ping'"):
            list(client.stream("ping"))
        assert DiesAtFirstStart.starts == 1
        assert client.ping()["kind"] == "pong"  # the next request starts a fresh worker
        assert DiesAtFirstStart.starts == 2
    finally:
        client.close()
