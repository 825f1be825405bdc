"""Throughput of screening many BCCD fields: a local Dask cluster against one process.

What ``allnet classify`` runs (:func:`allnet_core.inference.classify_images` streaming into
a result store), on ``--n`` BCCD smear fields (default 240), measured in one run:

* one process (the default path), the model loaded and warm;
* a ``LocalCluster`` of ``--workers`` processes (default 2), each worker's model loaded
  once and warm: images/s and the ratio to one process (goal >= 1.7x with 2 workers on 2
  cores);
* start-up costs paid once per run: the cluster, the model on every worker;
* Dask's per-task overhead: the round trip of an empty task through the same
  ``submit``/``as_completed`` loop, against the per-image work of one process.

The model is an untrained ALLNet at ``--size`` (450, the paper's input, by default; weights
do not change the speed). The machine's load average is printed before and after: other
jobs on the same cores change the figures.

Usage::

    ALLNET_DATA_DIR=/path/to/data python benchmarks/screening_speed.py [--n 240] [--size 450]
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def _rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=240)
    parser.add_argument("--size", type=int, default=450)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    root = os.environ.get("ALLNET_DATA_DIR")
    if not root:
        raise SystemExit("set ALLNET_DATA_DIR (BCCD fields are needed)")
    fields = sorted((Path(root) / "bccd" / "JPEGImages").glob("*.jpg"))
    warm, files = fields[-8:], fields[:args.n]
    if len(files) < args.n or len(fields) < args.n + 8:
        raise SystemExit(f"only {len(fields)} BCCD fields")

    from distributed import Client

    from allnet_core.inference import Classifier, classify_images
    from allnet_core.inference.distributed import local_cluster

    tmp = Path(tempfile.mkdtemp(prefix="allnet-bench-"))
    print(f"load average before: {os.getloadavg()}  cores: {os.cpu_count()}")
    try:
        model = _model(args.size, tmp)
        clf = Classifier.load(model)
        classify_images(clf, warm, out=tmp / "warm1.parquet")
        one = _rate(lambda: classify_images(clf, files, out=tmp / "one.parquet"), len(files))
        print(f"one process:        {one:6.2f} images/s  ({1 / one:.3f} s per image)")

        t0 = time.perf_counter()
        with local_cluster(args.workers) as cluster, Client(cluster) as client:
            t_cluster = time.perf_counter() - t0
            t0 = time.perf_counter()
            classify_images(model, warm, client=client, out=tmp / "warm2.parquet")
            t_load = time.perf_counter() - t0
            many = _rate(lambda: classify_images(model, files, client=client,
                                                 out=tmp / "many.parquet"), len(files))
            overhead = _task_overhead(client)
        print(f"{args.workers} Dask workers:     {many:6.2f} images/s  "
              f"ratio {many / one:.2f}x (goal >= 1.7x with 2 workers)")
        print(f"start-up, once per run: cluster {t_cluster:.1f} s; model on every worker and "
              f"the first {len(warm)} images {t_load:.1f} s")
        print(f"Dask per-task overhead: {overhead * 1e3:.1f} ms per task = "
              f"{overhead * one:.1%} of the per-image work ({1e3 / one:.0f} ms)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average after:  {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
