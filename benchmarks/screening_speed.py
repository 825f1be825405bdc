"""Throughput of screening many BCCD fields: a local Dask cluster against one process.

What ``allnet classify`` runs (:func:`allnet_core.inference.classify_images` streaming into
a result store), on ``--n`` BCCD smear fields (default 240), measured in one run:

* one process (the default path), the model loaded and warm;
* a ``LocalCluster`` of ``--workers`` processes (default 2), each worker's model loaded
  once and warm, with the default images per task and with one image per task: images/s
  and the ratio to one process (goal >= 1.7x with 2 workers on 2 cores);
* start-up costs paid once per run: the cluster, the model on every worker;
* Dask's per-task overhead: the round trip of an empty task through the same
  ``submit``/``as_completed`` loop, and the CPU time that this process (client, scheduler,
  result store) spends per one-image task, against the per-image work of one process.

The model is an untrained ALLNet at ``--size`` (450, the paper's input, by default; weights
do not change the speed). The machine's load average is printed before and after: other
jobs on the same cores change the wall-clock figures (with no idle core, a second worker
has nothing to run on); the CPU time per image, of one process and of the workers plus
the client, is much less disturbed by them, and so is the number of cores one process
keeps busy.

Both are warmed up first on 32 other fields (the model loaded, every batch shape compiled).
One process and the cluster then run alternately, ``--rounds`` times (3), each on fresh
result stores, and the median ratio is reported.

Usage::

    ALLNET_DATA_DIR=/path/to/data python benchmarks/screening_speed.py [--n 240] [--size 450]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def _model(size: int, folder: Path) -> Path:
    from allnet_core.backend import get_keras
    from allnet_core.model import build_allnet

    get_keras().utils.set_random_seed(0)
    path = folder / f"allnet_{size}.keras"
    build_allnet(input_shape=(size, size, 3)).save(path)
    return path


def _noop(x):
    return x


def _task_overhead(client, n: int = 400) -> float:
    """Seconds per empty task through submit + as_completed + result."""
    from distributed import as_completed

    t0 = time.perf_counter()
    futures = [client.submit(_noop, i, pure=False) for i in range(n)]
    for f in as_completed(futures):
        f.result()
    return (time.perf_counter() - t0) / n


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _workers_cpu(client) -> float:
    """CPU seconds used so far by all worker processes together."""
    return float(sum(client.run(_cpu_seconds).values()))


def _timed(fn) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds of ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def _one_process(clf, files, store) -> tuple[float, float, float]:
    """images/s, CPU seconds per image and cores busy of one process."""
    from allnet_core.inference import classify_images

    wall, cpu = _timed(lambda: classify_images(clf, files, out=store))
    return len(files) / wall, cpu / len(files), cpu / wall


def _cluster(client, model, files, store, k) -> tuple[float, float, float]:
    """images/s, workers' and this process's CPU seconds per image on the cluster."""
    from allnet_core.inference import classify_images

    before = _workers_cpu(client)
    wall, cpu = _timed(lambda: classify_images(model, files, client=client, out=store,
                                               images_per_task=k))
    n = len(files)
    return n / wall, (_workers_cpu(client) - before) / n, cpu / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=240)
    parser.add_argument("--size", type=int, default=450)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = os.environ.get("ALLNET_DATA_DIR")
    if not root:
        raise SystemExit("set ALLNET_DATA_DIR (BCCD fields are needed)")
    fields = sorted((Path(root) / "bccd" / "JPEGImages").glob("*.jpg"))
    if len(fields) < args.n + 32:
        raise SystemExit(f"only {len(fields)} BCCD fields")
    warm, files = fields[-32:], fields[:args.n]  # warm-up: every batch shape, both ways

    from distributed import Client

    from allnet_core.inference import Classifier, classify_images
    from allnet_core.inference.distributed import local_cluster, task_size

    tmp = Path(tempfile.mkdtemp(prefix="allnet-bench-"))
    n = len(files)
    print(f"{n} BCCD fields, ALLNet at {args.size}x{args.size}; load average before: "
          f"{os.getloadavg()}, cores: {os.cpu_count()}")
    try:
        model = _model(args.size, tmp)
        clf = Classifier.load(model)
        classify_images(clf, warm, out=tmp / "warm1.parquet")
        t0 = time.perf_counter()
        with local_cluster(args.workers) as cluster, Client(cluster) as client:
            t_cluster = time.perf_counter() - t0
            t_load, _ = _timed(lambda: classify_images(model, warm, client=client,
                                                       out=tmp / "warm2.parquet",
                                                       images_per_task=16))
            ratios = []
            for r in range(args.rounds):  # interleaved: drifting load hits both alike
                one, one_cpu, busy = _one_process(clf, files, tmp / f"one{r}.parquet")
                many, workers, client_cpu = _cluster(client, model, files,
                                                     tmp / f"many{r}.parquet", None)
                ratios.append(many / one)
                print(f"round {r + 1}: one process {one:6.2f} images/s (CPU {1e3 * one_cpu:.0f} "
                      f"ms per image, {busy:.2f} cores busy); {args.workers} workers "
                      f"({task_size(n, args.workers, 16)} images/task) {many:6.2f} images/s "
                      f"(CPU {1e3 * workers:.0f} ms workers + {1e3 * client_cpu:.0f} ms client "
                      f"and scheduler per image): ratio {many / one:.2f}x; "
                      f"load {os.getloadavg()[0]:.1f}")
            single, _, client_one = _cluster(client, model, files, tmp / "single.parquet", 1)
            empty = _task_overhead(client)
        print(f"median ratio {statistics.median(ratios):.2f}x (goal >= 1.7x with 2 workers)")
        print(f"one image per task: {single:.2f} images/s ({single / one:.2f}x the last "
              "one-process round)")
        print(f"start-up, once per run: cluster {t_cluster:.1f} s; the model on every worker "
              f"and the {len(warm)} warm-up images {t_load:.1f} s")
        print(f"Dask per-task overhead: an empty task's round trip {empty * 1e3:.1f} ms; "
              f"client+scheduler CPU per one-image task {client_one * 1e3:.0f} ms = "
              f"{client_one * one:.0%} of the per-image work ({1e3 / one:.0f} ms in one process)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average after:  {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
