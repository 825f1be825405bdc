"""The deep-learning worker process (``python -m allnet_core.worker``) and its client.

Classification and training load Keras and its backend. On Linux with Mesa graphics
(Xvfb included) TensorFlow cannot share a process with a Qt OpenGL context (tensorflow
issue 109933), so GUIs such as the napari plugin run that work in a child process and
talk to it through a pipe, one JSON object per line. The worker calls the same
:mod:`allnet_core` functions as the command line.

Modules
-------
:mod:`~allnet_core.worker.protocol`
    Op names, message kinds, line encoding and decoding; the protocol's reference.
:mod:`~allnet_core.worker.server`
    :class:`Worker`, the request loop of the worker process, and :func:`main`.
:mod:`~allnet_core.worker.jobs`
    What the ``classify``, ``train`` and ``device_info`` requests do.
:mod:`~allnet_core.worker.client`
    :class:`WorkerClient`, which starts a worker and streams a job's messages (no Qt).

Importing this package loads no Keras: the jobs import it when they run.
"""

from allnet_core.worker.client import WorkerClient, WorkerCrashed, WorkerError
from allnet_core.worker.protocol import CONTROL_OPS, JOB_OPS
from allnet_core.worker.server import Worker, main

__all__ = [
    "CONTROL_OPS",
    "JOB_OPS",
    "Worker",
    "WorkerClient",
    "WorkerCrashed",
    "WorkerError",
    "main",
]
