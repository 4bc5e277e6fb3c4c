#!/usr/bin/env bash
# Fill what benchmarks/gpu_check.sh needs on a lent GPU machine, here, on a machine with internet:
#
#   wheels/    x86-64 Python 3.12 wheels the GPU image lacks: av (PyAV: decoding for
#              extract-frames), multiprocess and dill (the runner's process pool). ~36 MB.
#   gpu_data/  a copy of ../shared/data/{videos, flow/middlebury} (~7 MB): only the repository's
#              own folder travels to the GPU machine, and ../shared does not.
#
# Both are git-ignored (.gitignore). The GPU machine's whole working tree may hold 64 MiB, so
# opencv-contrib-python-headless (69 MB) is NOT carried: the image's plain OpenCV decodes and
# encodes, and the benchmark compares its EPE with OpenCV's measured reference values instead.
# Set WITH_OPENCV_CONTRIB=1 to fetch it anyway (then drop gpu_data or av to stay under 64 MiB).
#
# Then, from the session that may use the GPU (the tool sends that session's own checkout: run
# this in that checkout, e.g. /work/main after merging), call the device tool with
#   command: bash benchmarks/gpu_check.sh      carry: ["wheels", "gpu_data"]     timeout_s: 540
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
SHARED="${SHARED_DATA:-../shared/data}"

rm -rf wheels gpu_data
mkdir -p wheels gpu_data/flow
# One version of each, pinned to what this project is tested with (av 18.1 bundles FFmpeg 8.1).
packages=(av==18.1.0 multiprocess==0.70.19 dill==0.4.1)
if [[ "${WITH_OPENCV_CONTRIB:-0}" == 1 ]]; then
    packages+=(opencv-contrib-python-headless==5.0.0.93)
fi
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d wheels "${packages[@]}"

cp -r "$SHARED/videos" gpu_data/videos
mkdir -p gpu_data/flow/middlebury
for pair in RubberWhale Dimetrodon; do
    mkdir -p "gpu_data/flow/middlebury/$pair"
    cp "$SHARED/flow/middlebury/$pair/"{frame10_gray.png,frame11_gray.png,flow10.flo} "gpu_data/flow/middlebury/$pair/"
done

du -sh wheels gpu_data
echo "working tree that would travel (tracked + untracked-not-ignored + carried), must stay under 64 MiB:"
du -shc --exclude=.git --exclude=.venv --exclude=__pycache__ --exclude=.pytest_cache . | tail -n 1
