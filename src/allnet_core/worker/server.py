"""The worker process: the request loop behind ``python -m allnet_core.worker``.

:class:`Worker` reads requests (see :mod:`allnet_core.worker.protocol`) on one thread and
runs jobs (:mod:`allnet_core.worker.jobs`) one at a time on the main thread, so ``ping``
and ``cancel`` are answered while a job runs.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import traceback
from typing import IO, Any

from allnet_core import __version__
from allnet_core.errors import AllnetError, CancelledError, ProtocolError, describe_os_error
from allnet_core.progress import CancelToken
from allnet_core.worker import jobs
from allnet_core.worker.protocol import (
    CONTROL_OPS,
    JOB_OPS,
    decode_request,
    encode_message,
)

__all__ = ["Worker", "main"]


class Worker:
    """The request loop of the worker process.

    Parameters
    ----------
    inp : text or binary stream
        Where requests arrive, one JSON object per line (bytes are decoded as UTF-8 line
        by line; a line that is not is answered with a ``ProtocolError``).
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
        self._handlers: dict[str, jobs.Handler] = jobs.handlers()

    # ------------------------------------------------------------------ messages
    def send(self, kind: str, **fields: Any) -> None:
        """Write one message line ``{"kind": kind, **fields}``."""
        line = encode_message(kind, **fields)
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
        """Read request lines until ``shutdown`` or end of input, whatever the bytes are;
        then stop what runs and let :meth:`run` return."""
        try:
            for line in self._inp:
                if line.strip() and self._handle_line(line) == "shutdown":
                    break
        except Exception as exc:  # an unreadable stdin: stop as at end of input
            print(f"allnet worker: cannot read requests ({type(exc).__name__}: {exc})",
                  file=sys.stderr)
        finally:
            self._stopping.set()
            self._cancel_current()
            self._jobs.put(None)

    def _handle_line(self, line: str | bytes) -> str | None:
        """Answer or queue one request line; return its op (``None`` if it was bad)."""
        try:
            request = decode_request(line.strip())
        except ProtocolError as exc:
            self.send("error", id=None, op=None, error_type="ProtocolError", message=str(exc))
            return None
        op, rid = request.get("op"), request.get("id")
        if op == "ping":
            self.send("pong", id=rid, busy=self._current is not None, pid=os.getpid())
        elif op == "cancel":
            self._cancel(rid)
        elif op in JOB_OPS:
            self._jobs.put(request)
        elif op != "shutdown":
            known = ", ".join(JOB_OPS + CONTROL_OPS)
            self.send("error", id=rid, op=op, error_type="ProtocolError",
                      message=f"unknown op {op!r}; known ops: {known}")
        return op

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
            reply = ("result", {"result": self._handlers[op](request, progress, token)})
        except CancelledError as exc:
            reply = ("cancelled", {"message": str(exc)})
        except AllnetError as exc:
            reply = ("error", {"error_type": type(exc).__name__, "message": str(exc)})
        except OSError as exc:  # a read-only or full output folder: the user's to fix
            reply = ("error", {"error_type": type(exc).__name__,
                               "message": describe_os_error(exc)})
        except Exception as exc:  # report, keep serving: one bad job must not kill the worker
            reply = ("error", {"error_type": type(exc).__name__,
                               "message": f"{type(exc).__name__}: {exc}",
                               "traceback": traceback.format_exc()})
        # Idle before the reply goes out: a ping answered after it never says "busy".
        with self._state_lock:
            self._current = None
        self.send(reply[0], id=rid, op=op, **reply[1])


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
    # bytes, decoded line by line: one line that is not UTF-8 gets an error reply
    inp = open(sys.stdin.fileno(), "rb", closefd=False)  # noqa: SIM115
    return Worker(inp, out).run()
