"""Fetch the public real-data sets the tests use (BCCD, Zheng set 1) at pinned commits.

Usage: python .github/scripts/fetch_realdata.py OUT_DIR

Downloads each repository's archive at a fixed commit, lays the files out as the tests
expect (see tests/data/realdata.sha256, which lists every file with its sha256), and
verifies every checksum. On success it prints ``ALLNET_DATA_DIR=OUT_DIR`` and, inside
GitHub Actions, appends that line to ``$GITHUB_ENV`` so the test step uses it. On any
failure it says which data set failed and why, sets nothing, and exits 0: the real-data
tests then skip, each with its reason in pytest's summary (``-ra``).

The C-NMC cells are not fetched: they come from several repositories without one pinned
source, so the C-NMC real-data tests skip on GitHub and run where ALLNET_DATA_DIR holds
them (the project's own CI).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

MANIFEST = Path(__file__).resolve().parents[2] / "tests" / "data" / "realdata.sha256"

# data set -> (archive URL at a pinned commit, {path in archive (after the top folder):
# path under OUT_DIR}); folders map file by file.
SOURCES = {
    "bccd": (
        "https://github.com/Shenggan/BCCD_Dataset/archive/d272fb14.tar.gz",
        {"BCCD/JPEGImages": "bccd/JPEGImages", "BCCD/Annotations": "bccd/Annotations",
         "LICENSE": "bccd/LICENSE"},
    ),
    "zheng": (
        "https://github.com/zxaoyou/segmentation_WBC/archive/fa9c0162.tar.gz",
        {"Dataset 1": "zheng/dataset1", "Class Labels of Dataset 1.csv":
         "zheng/dataset1_classes.csv", "LICENSE": "zheng/LICENSE"},
    ),
}


def _manifest() -> dict[str, str]:
    entries = {}
    for line in MANIFEST.read_text(encoding="utf-8").splitlines():
        digest, name = line.split(maxsplit=1)
        entries[name.strip()] = digest
    return entries


def _fetch(name: str, out: Path, wanted: dict[str, str]) -> None:
    url, mapping = SOURCES[name]
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            inner = member.name.split("/", 1)[1] if "/" in member.name else member.name
            for src, dst in mapping.items():
                if inner == src or inner.startswith(src + "/"):
                    target = dst + inner[len(src):]
                    if target in wanted:
                        path = out / target
                        path.parent.mkdir(parents=True, exist_ok=True)
                        with tar.extractfile(member) as fh, open(path, "wb") as dest:
                            shutil.copyfileobj(fh, dest)


def _verify(name: str, out: Path, wanted: dict[str, str]) -> list[str]:
    bad = []
    for rel, digest in wanted.items():
        path = out / rel
        if not path.is_file():
            bad.append(f"{rel}: missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            bad.append(f"{rel}: checksum differs")
    return bad


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "realdata").resolve()
    manifest = _manifest()
    ok = True
    for name in SOURCES:
        wanted = {k: v for k, v in manifest.items() if k.startswith(name + "/")}
        try:
            _fetch(name, out, wanted)
            bad = _verify(name, out, wanted)
        except Exception as exc:  # network, archive: report and let the tests skip
            bad = [f"download failed ({type(exc).__name__}: {exc})"]
        if bad:
            ok = False
            print(f"real data: {name}: NOT available, its tests will skip: {bad[0]}"
                  + (f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""))
        else:
            print(f"real data: {name}: {len(wanted)} files, every sha256 verified")
    if not ok:
        print("real data: ALLNET_DATA_DIR not set; every real-data test skips with its reason")
        return 0
    print(f"ALLNET_DATA_DIR={out}")
    env_file = os.environ.get("GITHUB_ENV")
    if env_file:
        with open(env_file, "a", encoding="utf-8") as fh:
            fh.write(f"ALLNET_DATA_DIR={out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
