"""The result store of screening runs: commits, resume by content, other settings (issue 13)."""

from __future__ import annotations

import pandas as pd
import pytest

from allnet_core.errors import ConfigError

pytest.importorskip("pyarrow")


def _batch(sources: list[str], hashes: list[str], n_cells: list[int], errors=None):
    from allnet_core.inference._run import BATCH_COLUMNS

    cells = pd.DataFrame([{**{c: 0 for c in BATCH_COLUMNS}, "source": s, "subject": "",
                           "mode": "smear", "class": "HEM", "p_all": 0.1, "label": k + 1,
                           "sha256": h}
                          for s, h, n in zip(sources, hashes, n_cells, strict=True)
                          for k in range(n)])
    errors = errors or [""] * len(sources)
    images = pd.DataFrame({"source": sources, "sha256": hashes, "subject": "",
                           "mode": ["" if e else "smear" for e in errors], "cells": n_cells,
                           "ALL": 0, "error": errors})
    return cells, images


def test_commit_resume_and_assemble(tmp_path):
    from allnet_core.inference.store import ResultStore, file_sha256

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"aaa")
    b.write_bytes(b"bbb")
    ha, hb = file_sha256(a), file_sha256(b)
    store = ResultStore(tmp_path / "cells.parquet", {"model_sha256": "m"}).open()
    store.write(*_batch([str(a)], [ha], [2]))
    store.write(*_batch([str(b)], [hb], [0], errors=["unreadable"]))
    assert store.done() == {ha}
    # an uncommitted cell part (a run killed between the two writes) is removed on open
    orphan = store.path / "part-orphan.parquet"
    _batch([str(b)], [hb], [1])[0].to_parquet(orphan)
    store = ResultStore(store.path, {"model_sha256": "m"}).open()
    assert not orphan.exists() and store.discarded == []
    # the same bytes under another name are done; sources follow the paths given now
    c = tmp_path / "c.png"
    c.write_bytes(b"aaa")
    cells, per_image, problems = store.assemble([b, c, a], [hb, ha, ha])
    assert cells["source"].tolist() == [str(c)] * 2 + [str(a)] * 2
    assert per_image["source"].tolist() == [str(c), str(a)]
    assert problems == [f"{b}: unreadable"]
    # b succeeds later: its newest good record wins, nothing twice
    store.write(*_batch([str(b)], [hb], [1]))
    cells, per_image, problems = store.assemble([a, b], [ha, hb])
    assert per_image["cells"].tolist() == [2, 1] and problems == []
    assert len(pd.read_parquet(store.path)) == 3


def test_other_settings_are_discarded_and_strangers_refused(tmp_path):
    from allnet_core.inference.store import ResultStore

    store = ResultStore(tmp_path / "cells.parquet", {"model_sha256": "m", "tta": False}).open()
    store.write(*_batch(["x.png"], ["h"], [1]))
    again = ResultStore(store.path, {"model_sha256": "m", "tta": True}).open()
    assert again.discarded == ["tta"] and again.done() == set()
    other = tmp_path / "other.parquet"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a result store"):
        ResultStore(other, {}).open()
    (tmp_path / "file.parquet").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        ResultStore(tmp_path / "file.parquet", {}).open()
