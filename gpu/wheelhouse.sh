#!/usr/bin/env bash
# Download, on a machine with PyPI, the wheels the GPU device image lacks for the GPU tests (gpu/README.md), then
# check them against that image (gpu/check_wheelhouse.py) and print their size. The device installs them with
# gpu/install_wheelhouse.sh from a carried .whl/ (git-ignored): zarr and its dependencies in .whl/gpu/, lpips in
# .whl/ where the benchmarks' device commands (BENCHMARKS.md) already look for it.
#
# usage: bash gpu/wheelhouse.sh          (PYTHON=/path/to/python picks the Python that runs pip; any >= 3.11)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# Exactly what the image (gpu/device-piplist.txt) lacks, pinned to releases that meet pyproject.toml's bounds (the
# ones `make test` runs here): zarr 3.1 needs donfig, google-crc32c (its crc32c codec) and numcodecs, whose compiled
# parts are built against numpy 2 and so load on the image's numpy 2.5.2; the rest of their requirements (numpy,
# packaging, typing-extensions, pyyaml) are on the image.
MISSING=(zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0)
LPIPS=lpips==0.1.4  # needs torch, torchvision, numpy, scipy, tqdm: all on the image

download() {  # download DEST SPEC...: CPython 3.12 wheels for manylinux x86_64, without their dependencies
    local dest=$1
    shift
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp --abi cp312 \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        --dest "$dest" "$@"
}

rm -rf .whl/gpu
mkdir -p .whl/gpu
download .whl/gpu "${MISSING[@]}"
ls .whl/lpips-*.whl >/dev/null 2>&1 || download .whl "$LPIPS"

"$PYTHON" gpu/check_wheelhouse.py .whl/gpu/*.whl .whl/*.whl
du -sh .whl | awk '{print "carry .whl: " $1 " (the device call carries at most 64 MiB)"}'
