"""Screening on a ``dask.distributed`` cluster: one task per batch of images.

:func:`run_on_cluster` is what :func:`~allnet_core.inference.classify_images` runs with a
``client``. The model is loaded once per worker by a worker plugin
(:class:`~allnet_core.inference._dask_tasks.ClassifierPlugin`), not once per task; each
task runs the same per-image work as the single-process path
(:func:`allnet_core.inference._run.run_items`) and returns its tables to this process,
which commits them to the result store as they complete, so results reach the disk in
the order they finish. Dask does the scheduling: a worker that dies is replaced by its
nanny and its tasks run again elsewhere; a batch whose task fails (a worker killed
repeatedly by one image, say) is recorded as failed and the run goes on.

``allnet classify --workers N`` starts a :func:`local_cluster`; ``--scheduler ADDRESS``
connects to a running one. Workers read the input images and write Grad-CAM overlays
and tile labels themselves, so on a cluster of several machines those paths must be on a
shared file system.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from allnet_core.progress import check_cancel, emit

__all__ = ["local_cluster", "plugin_name", "run_on_cluster", "task_size"]


def plugin_name(model: dict) -> str:
    """The worker plugin's name for a model: its hash and its card's, so two models (or
    two cards of one model) never mix."""
    names = ",".join(model.get("class_names") or [])
    card = (model.get("card_sha256") or "none")[:16]
    return (f"allnet-classifier-{model['sha256'][:16]}-{card}-{names}-"
            f"{model.get('positive_class')}")


def local_cluster(n_workers: int, threads_per_worker: int = 1, **kwargs):
    """A ``LocalCluster`` of ``n_workers`` processes (each with a nanny that replaces it
    if it dies), quiet and without a dashboard unless asked.

    Each worker's numerical libraries (BLAS, OpenMP, TensorFlow's thread pools) use
    ``threads_per_worker`` threads, so that N workers share the cores instead of each
    starting one thread per core. Dask's default ``MALLOC_TRIM_THRESHOLD_`` for worker
    processes is left out: it fixes glibc's mmap threshold at 128 KiB, so that every
    image-sized array is mapped and faulted in afresh (measured: 7,000 page faults and
    1.6x the time per BCCD field); set it in the environment to have it anyway.
    """
    import dask
    from distributed import LocalCluster

    threads = str(int(threads_per_worker))
    env = {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
           "MKL_NUM_THREADS": threads, "TF_NUM_INTRAOP_THREADS": threads,
           "TF_NUM_INTEROP_THREADS": "1", **kwargs.pop("env", {})}
    kwargs.setdefault("dashboard_address", None)
    kwargs.setdefault("silence_logs", 40)  # logging.ERROR
    pre_spawn = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()
                 if k != "MALLOC_TRIM_THRESHOLD_"}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": pre_spawn}):
        return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                            processes=True, env=env, **kwargs)


def task_size(n_images: int, n_threads: int, batch_size: int) -> int:
    """Images per task by default: ``batch_size``, fewer when that would leave under 4
    tasks per worker thread.

    A task of ``batch_size`` single-cell images (or smear fields of about one white cell
    each, like BCCD's) fills one forward pass: the cells of the images of a task are
    pooled, as in one process, and ALLNet's 95-million-weight dense layer costs about as
    much for one cell as for sixteen on a CPU. Four tasks per thread keep the load
    balanced when there are few images.
    """
    return max(1, min(int(batch_size), n_images // (4 * max(1, int(n_threads)))))


def run_on_cluster(client, model: dict, items: list[tuple], options: dict, *, store,
                   gradcam_dir: Path | None, images_per_task: int | None = None, progress=None,
                   cancel=None) -> None:
    """Classify ``items`` (``(path, sha256, gradcam_name)``) as Dask tasks into ``store``.

    Parameters
    ----------
    client : distributed.Client
    model : dict
        ``path``, ``sha256``, ``card_sha256``, ``class_names``, ``positive_class`` (see
        :func:`allnet_core.inference.screening.model_identity`).
    items : list of tuple
    options : dict
        ``mode``, ``tta``, ``batch_size``, ``threshold``, ``uncertain``.
    store : ResultStore
        Every completed task's tables are committed here at once.
    gradcam_dir : Path, optional
    images_per_task : int, optional
        Images per task. Fewer balance the load better; more amortise the per-task cost
        (the scheduler's and this process's work for every task, measured in
        ``benchmarks/screening_speed.py``) and pool the cells of several images into fuller
        forward passes. Default: :func:`task_size`.
    progress, cancel
        As in :func:`~allnet_core.inference.classify_images`; cancelling drops the tasks
        not yet finished.
    """
    from distributed import as_completed

    from allnet_core.errors import ConfigError
    from allnet_core.inference._dask_tasks import ClassifierPlugin, classify_batch

    if not items:  # everything is in the store already: no model to load
        return
    if images_per_task is None:
        images_per_task = task_size(len(items), sum(client.nthreads().values()),
                                    options["batch_size"])
    if int(images_per_task) < 1:
        raise ConfigError(f"images_per_task must be a positive integer, got {images_per_task}")
    name = plugin_name(model)
    client.register_plugin(ClassifierPlugin(str(Path(model["path"]).resolve()),
                                            model.get("class_names"),
                                            model.get("positive_class")), name=name)
    task_options = {**options, "labels_dir": store.labels_dir.resolve(),
                    "gradcam_dir": None if gradcam_dir is None else Path(gradcam_dir).resolve()}
    k = int(images_per_task)
    batches = [[(str(Path(p).resolve()), sha, cam) for p, sha, cam in items[i:i + k]]
               for i in range(0, len(items), k)]
    token = uuid.uuid4().hex[:12]
    futures = {client.submit(classify_batch, name, batch, task_options, pure=False,
                             key=f"allnet-classify-{token}-{i}"): (batch, items[i * k:(i + 1) * k])
               for i, batch in enumerate(batches)}
    done = 0
    try:
        for future in as_completed(list(futures)):
            check_cancel(cancel, "classification")
            _, given = futures[future]
            cells, images = _outcome(future, given)
            store.write(cells, images)
            failed = set(images.loc[images["error"] != "", "sha256"])
            future.release()
            for path, sha, _ in given:
                done += 1
                emit(progress, "file", done=done, total=len(items), path=str(path),
                     skipped=sha in failed)
    finally:
        client.cancel([f for f in futures if not f.done()])


def _outcome(future, items: list[tuple]):
    """A finished task's ``(cells, images)``; a failed task's images as errors."""
    from allnet_core.inference._run import cells_frame, error_record, records_frame

    try:
        return future.result()
    except Exception as exc:  # KilledWorker, an error outside the per-image guard ...
        message = f"the task failed: {type(exc).__name__}: {exc}"
        return cells_frame([]), records_frame([error_record(p, sha, message)
                                                for p, sha, _ in items])
