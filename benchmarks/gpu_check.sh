#!/usr/bin/env bash
# The GPU check in one command (see benchmarks/gpu_check.py for what it measures).
#
# On the GPU machine (Python 3.12 with JAX/CUDA, numpy, scipy, scikit-image, pandas ...,
# but no keras, no TensorFlow and no network), from the repository root:
#
#     bash benchmarks/gpu_check.sh            # prints one JSON line, about 6-7 minutes
#
# It installs the wheels in .whl/ (keras, its two missing needs and this project, all
# --no-deps) into /tmp/site and runs the check with KERAS_BACKEND=jax. Fetch the wheels
# first, here, on a machine with the package index (.whl/ is ignored by git):
#
#     bash benchmarks/gpu_check.sh fetch
#
# Extra arguments go to gpu_check.py (e.g. --steps 20).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "fetch" ]; then
    rm -rf .whl && mkdir -p .whl
    keras_version=$(python3 -c "import keras; print(keras.__version__)" 2>/dev/null || echo 3.13.2)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "keras==${keras_version}" namex optree
    python3 -m pip wheel -q --no-deps -w .whl .
    ls -l .whl
    exit 0
fi

if ! ls .whl/keras-*.whl >/dev/null 2>&1; then
    echo "gpu_check.sh: no wheels in .whl/; run 'bash benchmarks/gpu_check.sh fetch' first" >&2
    exit 2
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site KERAS_BACKEND=jax PYTHONUNBUFFERED=1
exec python3 benchmarks/gpu_check.py "$@"
