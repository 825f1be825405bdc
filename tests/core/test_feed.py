"""Tests of allnet_core.feed: resize_for_model and the streaming TrainingFeed."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest

from allnet_core.augment import Augmenter, apply_params, balance_plan
from allnet_core.errors import ConfigError, DatasetError, ImageReadError
from allnet_core.feed import FeedCore, make_feed, resize_for_model
from allnet_core.io import read_rgb, write_csv, write_image
from allnet_core.synthetic import synth_cell

SIZE = 48  # model input size in these tests


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """13 synthetic cells on disk (8 ALL, 5 HEM), 64x64 PNG."""
    root = tmp_path_factory.mktemp("cells")
    paths, labels = [], []
    for i in range(13):
        label = "ALL" if i < 8 else "HEM"
        path = root / f"cell_{i:02d}_{label.lower()}.png"
        write_image(path, synth_cell(label, rng=i, size=64))
        paths.append(str(path))
        labels.append(label)
    return paths, labels


# --------------------------------------------------------------------------- resize


def test_resize_for_model_shapes_and_values():
    img = synth_cell("ALL", rng=0, size=96)
    same = resize_for_model(img, 96)
    assert same.dtype == np.float32 and same.shape == (96, 96, 3)
    np.testing.assert_array_equal(same, img.astype(np.float32))
    small = resize_for_model(img, 48)  # area averaging: 2x2 means
    assert small.shape == (48, 48, 3) and small.dtype == np.float32
    expected = img.astype(np.float64).reshape(48, 2, 48, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(small, expected, atol=1e-3)
    big = resize_for_model(img, 150)
    assert big.shape == (150, 150, 3) and 0 <= big.min() and big.max() <= 255
    assert big.mean() == pytest.approx(img.mean(), rel=0.05)


def test_resize_for_model_pads_non_square_with_black():
    img = np.full((60, 30, 3), 200, np.uint8)
    out = resize_for_model(img, 60)
    assert out.shape == (60, 60, 3)
    assert (out[:, 15:45] == 200).all() and (out[:, :15] == 0).all() and (out[:, 45:] == 0).all()


def test_resize_for_model_bad_input():
    with pytest.raises(ImageReadError, match="HxWx3"):
        resize_for_model(np.zeros((10, 10)), 8)
    with pytest.raises(ConfigError, match="input size"):
        resize_for_model(np.zeros((10, 10, 3), np.uint8), 0)


# --------------------------------------------------------------------------- batches


def test_batches_shapes_onehot_and_partial_last(files):
    paths, labels = files
    feed = make_feed(paths, labels, batch_size=4, input_size=SIZE, shuffle=False, workers=1)
    assert len(feed) == math.ceil(13 / 4) == 4
    sizes = []
    for i in range(len(feed)):
        x, y = feed[i]
        assert x.dtype == np.float32 and x.shape[1:] == (SIZE, SIZE, 3)
        assert y.dtype == np.float32 and y.shape == (len(x), 2)
        assert 0 <= x.min() and x.max() <= 255
        np.testing.assert_array_equal(y.sum(axis=1), 1)
        sizes.append(len(x))
    assert sizes == [4, 4, 4, 1]
    # index 1 = ALL
    _, y0 = feed[0]
    np.testing.assert_array_equal(y0, [[0, 1]] * 4)
    _, y3 = feed[3]
    np.testing.assert_array_equal(y3, [[1, 0]])
    with pytest.raises(IndexError):
        feed[4]


def test_validation_feed_is_untouched_and_in_order(files):
    paths, labels = files
    feed = make_feed(paths, labels, batch_size=5, input_size=SIZE, shuffle=False, workers=1)
    x = np.concatenate([feed[i][0] for i in range(len(feed))])
    expected = np.stack([resize_for_model(read_rgb(p), SIZE) for p in paths])
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(feed.targets(), [1] * 8 + [0] * 5)
    feed.on_epoch_begin()
    feed.on_epoch_end()
    feed.on_epoch_begin()  # a second epoch: same order, same pixels
    np.testing.assert_array_equal(np.concatenate([feed[i][0] for i in range(len(feed))]),
                                  expected)


def test_plan_replays_exactly(files, tmp_path):
    paths, labels = files
    plan = balance_plan(labels, per_class=10, seed=2)
    write_csv(tmp_path / "plan.csv", plan)  # as allnet train saves fold_<k>/plan.csv
    for p in (plan, pd.read_csv(tmp_path / "plan.csv", keep_default_na=False)):
        feed = make_feed(paths, labels, plan=p, batch_size=4, input_size=64, workers=1,
                         shuffle=True, seed=5)
        assert feed.num_samples == 20 and len(feed) == 5
        order = feed.sample_indices()
        x = np.concatenate([feed[i][0] for i in range(len(feed))])
        rows = plan.iloc[feed._order]
        assert list(order) == list(rows["index"])
        for k, row in enumerate(rows.itertuples()):
            expected = apply_params(read_rgb(paths[row.index]), row.params)
            np.testing.assert_array_equal(x[k], expected.astype(np.float32))
        np.testing.assert_array_equal(feed.targets(), [labels[i] == "ALL" for i in order])


def test_shuffle_per_epoch_under_seed(files):
    paths, labels = files
    plan = balance_plan(labels, per_class=10, seed=0)

    def orders(seed, epochs=3):
        feed = make_feed(paths, labels, plan=plan, batch_size=4, input_size=SIZE, seed=seed,
                         workers=1)
        out = []
        for _ in range(epochs):
            feed.on_epoch_begin()  # as Keras does
            out.append(tuple(feed._order))
            feed.on_epoch_end()
        return out, feed

    a, feed = orders(1)
    assert a == orders(1)[0]
    assert a != orders(2)[0]
    assert len(set(a)) == 3  # a new order each epoch
    for order in a:
        assert sorted(order) == list(range(20))  # each sample once per epoch
    feed.set_epoch(1)  # resume at epoch 1
    feed.on_epoch_begin()
    assert tuple(feed._order) == a[1]


def test_on_the_fly_augmentation_without_plan(files):
    paths, labels = files
    aug = Augmenter(seed=0)

    def first_batch(epoch):
        feed = make_feed(paths, labels, augmenter=aug, batch_size=13, input_size=SIZE,
                         shuffle=False, epoch=epoch, workers=1)
        return feed[0][0]

    plain = make_feed(paths, labels, batch_size=13, input_size=SIZE, shuffle=False,
                      workers=1)[0][0]
    e0, e0_again, e1 = first_batch(0), first_batch(0), first_batch(1)
    np.testing.assert_array_equal(e0, e0_again)
    assert not np.array_equal(e0, e1) and not np.array_equal(e0, plain)


def test_cache_gives_same_batches_within_limit(files):
    paths, labels = files
    plan = balance_plan(labels, per_class=8, seed=0)
    kwargs = dict(plan=plan, batch_size=4, input_size=SIZE, seed=3, workers=1)
    plain = make_feed(paths, labels, **kwargs)
    cached = make_feed(paths, labels, cache_bytes=1 << 30, **kwargs)
    for i in range(len(plain)):
        np.testing.assert_array_equal(plain[i][0], cached[i][0])
    used = set(plan["index"])
    assert set(cached._cache) == used and cached._cache_used == len(used) * 64 * 64 * 3
    limited = make_feed(paths, labels, cache_bytes=3 * 64 * 64 * 3 + 10, **kwargs)
    for i in range(len(limited)):
        np.testing.assert_array_equal(plain[i][0], limited[i][0])
    assert len(limited._cache) == 3 and limited._cache_used <= limited.cache_bytes
    assert not plain._cache


def test_pickles_for_worker_processes(files):
    paths, labels = files
    feed = make_feed(paths, labels, plan=balance_plan(labels, per_class=7, seed=0),
                     batch_size=4, input_size=SIZE, workers=1, cache_bytes=1 << 20)
    feed[0]
    clone = pickle.loads(pickle.dumps(feed))
    assert type(clone).__name__ == "TrainingFeed" and not clone._cache
    np.testing.assert_array_equal(clone[1][0], feed[1][0])


def test_keras_fit_sees_every_sample_once_per_epoch(files):
    from allnet_core.backend import get_keras
    from allnet_core.feed import TrainingFeed

    keras = get_keras()
    paths, labels = files
    seen: list[tuple[int, int]] = []

    class Recording(TrainingFeed):
        def __getitem__(self, index):
            seen.append((self.epoch, index))
            return super().__getitem__(index)

    plan = balance_plan(labels, per_class=12, seed=0)
    feed = Recording(paths, labels, plan=plan, batch_size=5, input_size=16, workers=2)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    # the callback pins the feed to Keras' epoch (JAX makes one more pass to build the model)
    history = model.fit(feed, epochs=2, shuffle=False, verbose=0,
                        callbacks=[feed.epoch_callback()])
    assert len(history.history["loss"]) == 2
    # every batch of each epoch is built with that epoch's order (epoch 0 also serves the
    # first batches Keras peeks at to learn the output signature)
    for epoch in (0, 1):
        assert {i for e, i in seen if e == epoch} == set(range(len(feed)))
    assert sorted(i for e, i in seen if e == 1) == list(range(len(feed)))
    assert feed.epoch == 1


# --------------------------------------------------------------------------- bad input


def test_not_an_rgb_image_names_the_file(files, tmp_path):
    paths, labels = files
    gray = tmp_path / "gray.png"
    write_image(gray, np.full((64, 64), 90, np.uint8))
    feed = make_feed([*paths[:3], str(gray)], [*labels[:3], "HEM"], batch_size=4,
                     input_size=SIZE, shuffle=False, workers=1)
    with pytest.raises(ImageReadError, match="gray.png.*grayscale"):
        feed[0]


def test_missing_file_fails_at_construction(files):
    paths, labels = files
    with pytest.raises(DatasetError, match="do not exist.*nope.png"):
        make_feed([*paths, "/nowhere/nope.png"], [*labels, "ALL"], workers=1)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"batch_size": 0}, ConfigError, "batch_size"),
    ({"input_size": -3}, ConfigError, "input_size"),
    ({"cache_bytes": -1}, ConfigError, "cache_bytes"),
    ({"workers": 0}, ConfigError, "workers"),
])
def test_bad_settings(files, kwargs, error, match):
    paths, labels = files
    with pytest.raises(error, match=match):
        make_feed(paths, labels, **kwargs)


def test_bad_labels_and_plans(files):
    paths, labels = files
    with pytest.raises(DatasetError, match="MONO"):
        make_feed(paths, [*labels[:-1], "MONO"], workers=1)
    with pytest.raises(DatasetError, match="labels"):
        make_feed(paths, labels[:-1], workers=1)
    plan = balance_plan(labels, per_class=10, seed=0)
    with pytest.raises(ConfigError, match="another table"):  # a plan for a bigger table
        make_feed(paths[:5], labels[:5], plan=plan, workers=1)
    swapped = plan.assign(label=plan["label"].map({"ALL": "HEM", "HEM": "ALL"}))
    with pytest.raises(ConfigError, match="another table"):
        make_feed(paths, labels, plan=swapped, workers=1)
    with pytest.raises(ConfigError, match="columns"):
        make_feed(paths, labels, plan=plan.drop(columns="params"), workers=1)


def test_feedcore_needs_no_keras(files):
    paths, labels = files
    core = FeedCore(paths, labels, batch_size=6, input_size=SIZE, shuffle=False)
    x, y = core[2]
    assert x.shape == (1, SIZE, SIZE, 3) and y.tolist() == [[1.0, 0.0]]
