"""Keras starts without the framework's C++ chatter; real errors on stderr still show."""

from __future__ import annotations

import subprocess
import sys

NOISE = ("cuInit", "absl::InitializeLog", "cuda drivers", "oneDNN", "cpu_feature_guard")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


def test_keras_starts_quietly():
    proc = _run("from allnet_core.backend import get_keras; k = get_keras(); print(k.__name__)")
    assert proc.returncode == 0 and proc.stdout.strip() == "keras"
    assert not [line for line in proc.stderr.splitlines() if any(n in line for n in NOISE)]


def test_other_native_stderr_lines_are_replayed():
    proc = _run(
        "import os\n"
        "from allnet_core.backend import _filtered_native_stderr\n"
        "with _filtered_native_stderr():\n"
        "    os.write(2, b'E0000 00:00:1.0 1 cuda_platform.cc:52] failed call to cuInit\\n')\n"
        "    os.write(2, b'real problem: disk on fire\\n')\n"
    )
    assert proc.returncode == 0
    assert proc.stderr == "real problem: disk on fire\n"
