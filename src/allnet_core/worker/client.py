"""Talk to the deep-learning worker process (``python -m allnet_core.worker``).

Keras/TensorFlow never load into a GUI's process (they crash next to a Qt OpenGL context
on Linux with Mesa, tensorflow issue 109933). :class:`WorkerClient` starts
``python -m allnet_core.worker`` with the same interpreter, sends it JSON-line requests
(:mod:`allnet_core.worker.protocol`) and streams its JSON-line messages back. It knows
nothing of Qt: the napari widgets iterate :meth:`WorkerClient.stream` inside a napari
``thread_worker``.
"""

from __future__ import annotations

import collections
import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Generator, Iterator
from typing import Any

from allnet_core.backend import _NATIVE_NOISE
from allnet_core.errors import AllnetError
from allnet_core.progress import CancelLike
from allnet_core.worker.protocol import (
    TERMINAL_KINDS,
    WORKER_MODULE,
    decode_message,
    encode_request,
)

__all__ = ["WorkerClient", "WorkerCrashed", "WorkerError"]

_EOF = object()


class WorkerError(AllnetError):
    """The worker answered a request with an error (the worker itself is still alive)."""

    def __init__(self, message: str, error_type: str = "", traceback: str = ""):
        super().__init__(message)
        self.error_type = error_type
        self.traceback = traceback


class WorkerCrashed(AllnetError):
    """The worker process died (crash, out of memory, killed) before answering."""

    def __init__(self, message: str, returncode: int | None = None, stderr_tail: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.stderr_tail = stderr_tail


class WorkerClient:
    """A long-lived ``python -m allnet_core.worker`` child process.

    Parameters
    ----------
    python : str, optional
        Interpreter to run; by default the one running napari (``sys.executable``).
    env : dict, optional
        Extra environment variables for the worker (e.g. ``KERAS_BACKEND``).
    cancel_grace : float
        Seconds a cancelled job may take to reach its next batch before the worker is
        terminated.
    start_grace : float
        The same while the job has not started its batches yet (the framework's start-up,
        loading a model), which cannot stop half-way: a cancel then stops the worker
        after this short wait instead of ``cancel_grace``.
    stderr_lines : int
        How many lines of the worker's stderr to keep for crash reports.

    Notes
    -----
    One job runs at a time. The process starts on the first request and restarts
    automatically after a crash or a forced cancel.
    """

    def __init__(self, python: str | None = None, env: dict[str, str] | None = None,
                 cancel_grace: float = 20.0, start_grace: float = 2.0,
                 stderr_lines: int = 60):
        self.python = python or sys.executable
        self.env = dict(env or {})
        self.cancel_grace = float(cancel_grace)
        self.start_grace = float(start_grace)
        self._stderr: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self._proc: subprocess.Popen | None = None
        self._messages: queue.Queue = queue.Queue()
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._job_id: str | None = None
        self._cancel_requested = False
        self._batches_started = False  # the job has reported work beyond its start-up
        self._grace_used = self.cancel_grace
        self._grace_timer: threading.Timer | None = None

    # ------------------------------------------------------------------ process
    @property
    def pid(self) -> int | None:
        """Process id of the running worker, or None."""
        return self._proc.pid if self.is_alive() else None

    @property
    def busy(self) -> bool:
        """True while a job is running."""
        return self._job_id is not None

    def is_alive(self) -> bool:
        """True if the worker process is running."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the worker process if it is not running."""
        with self._lock:
            if self.is_alive():
                return
            self._stderr.clear()
            self._messages = queue.Queue()
            env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
            env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            self._proc = subprocess.Popen(
                [self.python, "-u", "-m", WORKER_MODULE],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, encoding="utf-8", errors="replace", bufsize=1, env=env,
                start_new_session=True,  # Ctrl-C in a terminal does not hit the worker
            )
            proc, messages = self._proc, self._messages
            threading.Thread(target=self._pump_stdout, args=(proc, messages),
                             name="allnet-worker-stdout", daemon=True).start()
            threading.Thread(target=self._pump_stderr, args=(proc,),
                             name="allnet-worker-stderr", daemon=True).start()

    def _pump_stdout(self, proc: subprocess.Popen, messages: queue.Queue) -> None:
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                messages.put(decode_message(line))
            except ValueError:  # not a protocol line: keep it for crash reports
                self._stderr.append(line)
        messages.put(_EOF)

    def _pump_stderr(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            self._stderr.append(line.rstrip("\n"))

    def stderr_tail(self, n: int = 20) -> str:
        """The last ``n`` lines the worker wrote to stderr, without the framework's
        start-up chatter (CUDA probing on a CPU machine, oneDNN notes ...)."""
        lines = [line for line in self._stderr
                 if line.strip() and not _NATIVE_NOISE.search(line)]
        return "\n".join(lines[-n:])

    def send(self, message: dict[str, Any]) -> None:
        """Write one request line to the worker (starting it if needed)."""
        with self._lock:
            self.start()
            proc = self._proc
        _write(proc, message)

    def close(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit; terminate, then kill it if it does not."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                _write(proc, {"op": "shutdown"})
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._stop_process(proc)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    stream.close()
                except OSError:
                    pass
            self._proc = None

    def _stop_process(self, proc: subprocess.Popen, grace: float = 3.0) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # ------------------------------------------------------------------ jobs
    def stream(self, op: str, cancel: CancelLike | None = None,
               **fields: Any) -> Iterator[dict[str, Any]]:
        """Run one job and yield its messages as they arrive.

        Yields ``{"kind": "progress", "event": {...}}`` messages and finally the terminal
        message: ``{"kind": "result", "result": {...}}`` or ``{"kind": "cancelled", ...}``.

        ``cancel`` (a :class:`~allnet_core.progress.CancelToken`) may be set from any
        thread, even before the job has reached the worker: the client then calls
        :meth:`cancel` for this job.

        Raises
        ------
        WorkerError
            The worker reported an error (it stays alive for the next job).
        WorkerCrashed
            The worker process died; the message holds its exit status and the tail of
            its stderr. The next job starts a fresh worker.
        """
        with self._lock:
            if self._job_id is not None:
                raise AllnetError("the worker is busy with another job; wait or cancel it")
            self._job_id = job_id = f"{op}-{next(self._ids)}"
            self._cancel_requested = False
            self._batches_started = False
        try:
            with self._lock:  # the job's process: a worker that dies now is reported, not
                self.start()  # silently replaced by a fresh one that gets the job
                proc, messages = self._proc, self._messages
            _write(proc, {"id": job_id, "op": op, **fields})
            while True:
                try:
                    msg = messages.get(timeout=0.1)
                except queue.Empty:
                    msg = None
                if cancel is not None and cancel.is_set() and not self._cancel_requested:
                    self.cancel()
                if msg is None:
                    continue
                if msg is _EOF:
                    yield from self._ended_without_answer(op, proc)
                    return
                if msg.get("id") != job_id:
                    continue  # "ready", stale pongs
                if msg["kind"] == "error":
                    raise WorkerError(msg.get("message", "unknown error"),
                                      msg.get("error_type", ""), msg.get("traceback", ""))
                if msg["kind"] == "progress" and _is_work(msg.get("event") or {}):
                    self._batches_started = True
                yield msg
                if msg["kind"] in TERMINAL_KINDS:
                    return
        finally:
            with self._lock:
                self._job_id = None
                if self._grace_timer is not None:
                    self._grace_timer.cancel()
                    self._grace_timer = None

    def events(self, op: str, cancel: CancelLike | None = None,
               **fields: Any) -> Generator[dict[str, Any], None, dict[str, Any]]:
        """Run one job as a generator of its progress events; return its outcome.

        Yields each progress event (a dict with ``"kind"``, see :mod:`allnet_core.progress`)
        and returns the job's ``result`` dict, or ``{"cancelled": message}`` when it was
        cancelled. Errors are raised as by :meth:`stream`. Meant for
        ``outcome = yield from client.events(...)`` in a GUI's background thread.
        """
        for msg in self.stream(op, cancel=cancel, **fields):
            if msg["kind"] == "progress":
                yield msg["event"]
            elif msg["kind"] == "cancelled":
                return {"cancelled": msg.get("message", "cancelled")}
            elif msg["kind"] == "result":
                return msg["result"]
        return {"cancelled": "the worker ended the job without an answer"}

    def ping(self, timeout: float = 60.0) -> dict[str, Any]:
        """Check that the worker answers (starting it if needed); returns its pong.

        Raises :class:`WorkerCrashed` if it does not answer within ``timeout`` seconds.
        """
        with self._lock:
            if self._job_id is not None:
                raise AllnetError("the worker is busy; ping it when the job has ended")
            self.start()
            proc, messages, rid = self._proc, self._messages, f"ping-{next(self._ids)}"
            _write(proc, {"op": "ping", "id": rid})
            try:
                while True:
                    msg = messages.get(timeout=timeout)
                    if msg is _EOF:
                        break
                    if msg.get("id") == rid:
                        return msg
            except queue.Empty:
                pass
            raise WorkerCrashed(f"the worker did not answer a ping within {timeout:g} s",
                                stderr_tail=self.stderr_tail())

    def call(self, op: str, progress=None, **fields: Any) -> dict[str, Any]:
        """Run one job to its end; return the terminal message.

        ``progress``, if given, is called with every progress event (a dict with
        ``"kind"``).
        """
        last: dict[str, Any] = {}
        for msg in self.stream(op, **fields):
            if msg["kind"] == "progress" and progress is not None:
                progress(msg["event"])
            last = msg
        return last

    def _ended_without_answer(self, op: str,
                              proc: subprocess.Popen) -> Iterator[dict[str, Any]]:
        try:
            code = proc.wait(10) if proc is not None else None
        except subprocess.TimeoutExpired:
            code = None
        if self._cancel_requested:
            yield {"kind": "cancelled", "op": op,
                   "message": f"{op} cancelled; the worker process was stopped, as it could "
                              f"not stop by itself within {self._grace_used:g} s"}
            return
        tail = self.stderr_tail()
        raise WorkerCrashed(
            f"{_describe_exit(code)} during {op!r}{_exit_hint(code)}"
            + (f"; last lines of its output:\n{tail}" if tail else ""),
            returncode=code, stderr_tail=tail,
        )

    def cancel(self) -> None:
        """Ask the running job to stop at its next batch.

        If it has not stopped after ``cancel_grace`` seconds (``start_grace`` while the
        job is still starting: framework start-up and model loading cannot stop half-way),
        the worker process is terminated: the job then ends as cancelled and the next job
        starts a new worker.
        """
        with self._lock:
            if self._job_id is None or not self.is_alive():
                return
            self._cancel_requested = True
            _write(self._proc, {"op": "cancel", "id": self._job_id})
            if self._grace_timer is None:
                proc = self._proc
                grace = self.cancel_grace if self._batches_started else self.start_grace
                self._grace_used = grace
                self._grace_timer = threading.Timer(grace, self._stop_process, args=(proc,))
                self._grace_timer.daemon = True
                self._grace_timer.start()


def _write(proc: subprocess.Popen, message: dict[str, Any]) -> None:
    """Write one request line to ``proc`` (never starts a process)."""
    try:
        proc.stdin.write(encode_request(message) + "\n")
        proc.stdin.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass  # the process is gone; stream() reports it from the exit code


#: ``stage`` events of steps that cannot check the cancel token (a job is in its start-up
#: until it reports anything else).
STARTUP_STAGES = ("loading model",)


def _is_work(event: dict[str, Any]) -> bool:
    """True for a progress event that shows the job past its start-up, where it checks
    the cancel token between batches."""
    return not (event.get("kind") == "stage" and event.get("stage") in STARTUP_STAGES)


def _describe_exit(code: int | None) -> str:
    """What happened to the worker process, from its return code."""
    if code is None:
        return "the worker process stopped answering and did not exit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            return f"the worker process was killed (signal {-code})"
        return f"the worker process was killed (signal {-code}, {name})"
    return f"the worker process exited with code {code}"


def _exit_hint(code: int | None) -> str:
    """A likely cause, where the return code suggests one."""
    if code == -signal.SIGKILL:
        return "; the system's out-of-memory killer sends SIGKILL: was memory short?"
    return ""
