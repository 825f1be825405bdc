"""The image cache (allnet_core.feed.cache), the cached feed and their use in training.

Images are tiny (24-40 px) so that every test takes a second or less, except the two
training runs and the parallel build (spawned processes)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from allnet_core.errors import CancelledError, ConfigError, DatasetError
from allnet_core.feed import CachedFeedCore, build_cache, dihedral, is_complete
from allnet_core.feed._batching import Batching
from allnet_core.feed._samples import augment_sample, model_input_uint8, read_sample
from allnet_core.progress import CancelToken

SIZE = 24


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """12 synthetic cells (40 px BMP) and, per cache row, a source and parameters."""
    from allnet_core.augment import Augmenter
    from allnet_core.io import write_image
    from allnet_core.synthetic import synth_cell

    folder = tmp_path_factory.mktemp("cells")
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(12):
        label = "ALL" if i % 2 else "HEM"
        path = folder / f"c{i:02d}.bmp"
        write_image(path, synth_cell(label, rng, size=40))
        paths.append(str(path))
        labels.append(label)
    aug = Augmenter(seed=3)
    rows = [i % 12 for i in range(20)]
    params = ["{}" if i < 12 else json.dumps(aug.sample_params(np.random.default_rng(i)))
              for i in range(len(rows))]
    return [paths[r] for r in rows], params, [labels[r] for r in rows]


def _expected(paths, params, size=SIZE):
    return np.stack([model_input_uint8(augment_sample(read_sample(p), q, p), size)
                     for p, q in zip(paths, params, strict=True)])


def test_build_then_reuse(sources, tmp_path):
    paths, params, _ = sources
    events = []
    info = build_cache(tmp_path / "c.npy", paths, params, SIZE, progress=events.append, fold=1)
    assert info.shape == (20, SIZE, SIZE, 3) and not info.reused
    np.testing.assert_array_equal(np.load(info.path, mmap_mode="r"), _expected(paths, params))
    assert is_complete(info.path)
    assert events[0]["done"] == 0 and events[-1]["done"] == events[-1]["total"] == 20
    assert all(e["kind"] == "cache" and e["fold"] == 1 for e in events)
    again = []
    reused = build_cache(tmp_path / "c.npy", paths, params, SIZE, progress=again.append)
    assert reused.reused and reused.fingerprint == info.fingerprint
    assert again == [{"kind": "cache", "done": 20, "total": 20, "reused": True,
                      "seconds": 0.0}]


def test_other_content_is_rebuilt(sources, tmp_path):
    paths, params, _ = sources
    first = build_cache(tmp_path / "c.npy", paths, params, SIZE)
    changed = build_cache(tmp_path / "c.npy", paths, ["{}"] * len(paths), SIZE)
    assert not changed.reused and changed.fingerprint != first.fingerprint
    np.testing.assert_array_equal(np.load(changed.path), _expected(paths, ["{}"] * 20))
    other_size = build_cache(tmp_path / "c.npy", paths, params, SIZE + 8)
    assert not other_size.reused and other_size.shape[1] == SIZE + 8


def test_cancelled_build_continues_where_it_stopped(sources, tmp_path, monkeypatch):
    import allnet_core.feed.cache as cache

    monkeypatch.setattr(cache, "_CHUNK_BYTES", 4 * SIZE * SIZE * 3)  # 5 chunks of 4 rows
    paths, params, _ = sources
    token = CancelToken()

    def progress(event):
        if event["done"] >= 8:
            token.cancel()

    with pytest.raises(CancelledError):
        build_cache(tmp_path / "c.npy", paths, params, SIZE, progress=progress, cancel=token)
    record = json.loads((tmp_path / "c.json").read_text())
    assert record["complete"] is False and sorted(record["done"]) == [0, 4]
    assert not is_complete(tmp_path / "c.npy")
    with pytest.raises(DatasetError, match="incomplete"):
        CachedFeedCore(tmp_path / "c.npy", sources[2])
    events = []
    info = build_cache(tmp_path / "c.npy", paths, params, SIZE, progress=events.append)
    assert events[0]["done"] == 8  # the two finished chunks were kept
    assert len(events) == 1 + 3
    np.testing.assert_array_equal(np.load(info.path), _expected(paths, params))


def test_parallel_build_gives_the_same_bytes(sources, tmp_path, monkeypatch):
    import allnet_core.feed.cache as cache

    monkeypatch.setattr(cache, "_CHUNK_BYTES", 4 * SIZE * SIZE * 3)
    paths, params, _ = sources
    info = build_cache(tmp_path / "c.npy", paths, params, SIZE, workers=2)
    np.testing.assert_array_equal(np.load(info.path), _expected(paths, params))


def test_errors_are_clear(sources, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    paths, params, labels = sources
    with pytest.raises(DatasetError, match="missing.bmp"):
        build_cache(tmp_path / "c.npy", [str(tmp_path / "missing.bmp")], ["{}"], SIZE)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10, 10, 100))
    with pytest.raises(ConfigError, match="--feed stream"):
        build_cache(tmp_path / "d.npy", paths, params, SIZE)
    assert not (tmp_path / "d.npy").exists()
    monkeypatch.undo()
    info = build_cache(tmp_path / "c.npy", paths, params, SIZE)
    with pytest.raises(DatasetError, match="20 images but 3 labels"):
        CachedFeedCore(info.path, labels[:3])


@pytest.fixture
def cache(sources, tmp_path):
    paths, params, labels = sources
    return build_cache(tmp_path / "c.npy", paths, params, SIZE), labels


def test_batches_are_the_cached_rows_in_epoch_order(cache):
    info, labels = cache
    data = np.load(info.path)
    feed = CachedFeedCore(info.path, labels, batch_size=8, seed=5)
    assert len(feed) == 3 and feed.num_samples == 20
    xs, ys = zip(*(feed[i] for i in range(len(feed))), strict=True)
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert x.dtype == np.uint8 and y.dtype == np.float32 and len(x) == 20
    order = np.random.default_rng([5, 0]).permutation(20)
    np.testing.assert_array_equal(x, data[order])
    assert (y.argmax(1) == (np.array(labels)[order] == "ALL")).all()
    assert list(feed.targets()) == list(y.argmax(1))
    feed.on_epoch_begin()
    feed.on_epoch_begin()  # the second epoch: another order
    assert feed.epoch == 1 and not np.array_equal(feed[0][0], xs[0])


def test_flips_change_every_epoch_and_keep_the_pixels(cache):
    info, labels = cache
    plain = CachedFeedCore(info.path, labels, batch_size=20, shuffle=False)
    flipped = CachedFeedCore(info.path, labels, batch_size=20, shuffle=False, flips=True)
    x0, x1 = plain[0][0], flipped[0][0]
    assert not np.array_equal(x0, x1)
    for a, b in zip(x0, x1, strict=True):
        turns = [np.rot90(v, k) for v in (a, a[::-1]) for k in range(4)]
        assert any(np.array_equal(b, t) for t in turns)
    flipped.set_epoch(1)
    assert not np.array_equal(flipped[0][0], x1)
    flipped.set_epoch(0)
    np.testing.assert_array_equal(flipped[0][0], x1)  # seeded by (seed, epoch, batch)


def test_replicas_trim_training_and_pad_prediction_batches(cache):
    info, labels = cache
    train = CachedFeedCore(info.path, labels, batch_size=6, batch_multiple=3)
    assert [len(train[i][0]) for i in range(len(train))] == [6, 6, 6]  # 2 of 20 skipped
    predict = CachedFeedCore(info.path, labels, batch_size=8, shuffle=False,
                             batch_multiple=2, pad=True)
    sizes = [len(predict[i][0]) for i in range(len(predict))]
    assert sizes == [8, 8, 4]
    odd = CachedFeedCore(info.path, labels, batch_size=6, shuffle=False, batch_multiple=2,
                         pad=True)
    last = odd[3][0]  # rows 18, 19 -> already even
    np.testing.assert_array_equal(last, np.load(info.path)[18:20])
    with pytest.raises(ConfigError, match="replicas"):
        CachedFeedCore(info.path, labels, batch_size=8, batch_multiple=3)


def test_shards_split_each_global_batch(cache):
    info, labels = cache
    whole = CachedFeedCore(info.path, labels, batch_size=8, seed=2, flips=True)
    parts = [CachedFeedCore(info.path, labels, batch_size=8, seed=2, flips=True,
                            shard=(k, 2)) for k in range(2)]
    for i in range(len(whole)):
        x, y = whole[i]
        np.testing.assert_array_equal(np.concatenate([p[i][0] for p in parts]), x)
        np.testing.assert_array_equal(np.concatenate([p[i][1] for p in parts]), y)


def test_pickles_without_its_file(cache):
    import pickle

    info, labels = cache
    feed = CachedFeedCore(info.path, labels, batch_size=4, shuffle=False)
    feed[0]
    copy = pickle.loads(pickle.dumps(feed))
    np.testing.assert_array_equal(copy[1][0], feed[1][0])
    feed.close()


def test_dihedral_codes_are_the_eight_symmetries():
    x = np.arange(2 * 3 * 3 * 2, dtype=np.float32).reshape(2, 3, 3, 2)
    outs = [dihedral(x[:1], [c])[0] for c in range(8)]
    assert len({o.tobytes() for o in outs}) == 8
    np.testing.assert_array_equal(outs[3], np.rot90(x[0], 1))  # transpose + flip rows
    np.testing.assert_array_equal(outs[6], np.rot90(x[0], 2))
    with pytest.raises(ValueError, match="square"):
        dihedral(np.zeros((1, 2, 3, 3)), [0])


@pytest.mark.parametrize("n, batch, multiple, pad, sizes", [
    (10, 4, 1, False, [4, 4, 2]), (10, 4, 2, False, [4, 4, 2]), (9, 4, 2, False, [4, 4]),
    (9, 4, 2, True, [4, 4, 2]), (11, 6, 3, False, [6, 3]), (1, 4, 2, True, [2]),
])
def test_batching(n, batch, multiple, pad, sizes):
    b = Batching(n, batch, multiple, pad)
    assert [len(b.positions(i)) for i in range(len(b))] == sizes
    assert max(b.positions(len(b) - 1)) == min(n - 1, (len(b) - 1) * batch + sizes[-1] - 1)


# --------------------------------------------------------------------------- in training

TINY = dict(input_size=32, dense_units=16, epochs=1, per_class=16, folds=2, batch_size=8,
            lr=1e-3, holdout=0.25, workers=1)


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    from allnet_core.datasets import discover
    from allnet_core.synthetic import write_cnmc_dataset

    root = tmp_path_factory.mktemp("tiny_data")
    write_cnmc_dataset(root, subjects=8, cells_per_subject=6, seed=1, size=40)
    return discover(root)


@pytest.mark.backends
def test_cached_feed_trains_a_model(cache):
    from allnet_core.feed import make_cached_feed
    from allnet_core.model import build_allnet

    info, labels = cache
    feed = make_cached_feed(info.path, labels, batch_size=8, workers=2, flips=True)
    model = build_allnet((SIZE, SIZE, 3), dense_units=8)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    history = model.fit(feed, epochs=3, initial_epoch=1, verbose=0, shuffle=False,
                        callbacks=[feed.epoch_callback()])
    assert np.isfinite(history.history["loss"]).all()
    assert feed.epoch == 2


def test_cache_dir_is_kept_and_reused_and_a_cancelled_build_resumes(tiny_table, tmp_path,
                                                                     monkeypatch):
    """A run with ``cache_dir`` cancelled while building fold 1's cache resumes the build;
    a second run reuses every cache; run-folder caches are deleted with their fold."""
    import allnet_core.feed.cache as cache
    from allnet_core.training import TrainConfig, cross_validate

    monkeypatch.setattr(cache, "_CHUNK_BYTES", 4 * 32 * 32 * 3)
    config = TrainConfig(**TINY, cache_dir=str(tmp_path / "caches"))
    token, seen = CancelToken(), []

    def progress(event):
        seen.append(event)
        if event["kind"] == "cache" and event["done"] >= 8:
            token.cancel()

    with pytest.raises(CancelledError):
        cross_validate(tiny_table, config, tmp_path / "run", progress=progress, cancel=token)
    events = []
    cross_validate(tiny_table, config, tmp_path / "run", progress=events.append, resume=True)
    first = next(e for e in events if e["kind"] == "cache")
    assert first["fold"] == 1 and first["part"] == "train" and first["done"] >= 8
    assert len(list((tmp_path / "caches").glob("*.npy"))) == 4  # train + val, 2 folds
    assert TrainConfig.from_json(tmp_path / "run" / "config.json").feed == "cached"

    again = []
    cross_validate(tiny_table, config, tmp_path / "run2", progress=again.append)
    reused = [e["reused"] for e in again if e["kind"] == "cache"]
    assert reused == [True] * 4
    assert not list((tmp_path / "run2").rglob("*_cache.*"))


def test_stream_feed_with_epoch_flips_trains(tiny_table, tmp_path):
    from allnet_core.training import TrainConfig, cross_validate

    config = TrainConfig(**TINY, feed="stream", epoch_flips=True)
    events = []
    result = cross_validate(tiny_table, config, tmp_path / "run", progress=events.append)
    assert result.report.is_file()
    assert not [e for e in events if e["kind"] == "cache"]
    assert {e["feed"] for e in events if e["kind"] == "fold_start"} == {"stream"}
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["feed"], saved["epoch_flips"]) == ("stream", True)
    history = pd.read_csv(tmp_path / "run" / "fold_1" / "history.csv")
    assert (history["train_seconds"] <= history["seconds"]).all()
