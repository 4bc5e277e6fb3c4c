#!/usr/bin/env bash
# One prepared run on a lent GPU machine (H200: Python 3.12 with torch, triton and a plain OpenCV;
# no PyAV, no internet). Finishes in under 8 minutes: every step has its own `timeout`, a failed
# step is recorded and the next one still runs. Results go to $OUT (at most 8 files come back):
#
#   summary.txt   one line per step (exit code, seconds, last line of its log) + the key figures
#   env.log       GPU, driver, Python and package versions; what was installed from wheels/
#   tests.log     tests/test_flow_triton.py on CUDA (compiled kernels, full-size Middlebury EPE)
#   bench.log     benchmarks/bench_gpu_flow.py: pairs/s 340x256 / 456x256, batch 32..1024,
#   bench.json      eager torch vs triton, GiB per pair, EPE; bench.json feeds plan.py --flow-json
#   extract.log   extract-frames --task both --flow-backend triton on the real clips
#   feed.log      benchmarks/gpu_feed.py: extract-frames through the flow service, 1/4/all cores,
#                   end-to-end pairs/s and cuda:0's busy share (issue #16)
#
# Before: benchmarks/gpu_check_prepare.sh (fills wheels/ and gpu_data/). Then, with the device tool
# from the checkout that session sends:  command "bash benchmarks/gpu_check.sh",
# carry ["wheels", "gpu_data"], timeout_s 540. Here without a GPU it runs too: the GPU-only steps
# say "no CUDA" and are skipped, the tests run in Triton's CPU interpreter, the benchmark does its
# CPU smoke run -- that is how this script itself is tested.
set -u
cd "$(dirname "$0")/.."
REPO="$PWD"
OUT="${OUT:-$REPO/gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
SUMMARY="$OUT/summary.txt"
START=$(date +%s)
# The whole run stays under 8 minutes whatever hangs: each step's limit is cut to what is left.
DEADLINE=$(( START + ${GPU_CHECK_BUDGET_S:-450} ))
: >"$SUMMARY"
export PYTHONUNBUFFERED=1

LAST_RC=0
note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME LOG SECONDS COMMAND...: run with a time limit, log appended, result line in summary.
step() {
    local name=$1 log=$2 limit=$3
    shift 3
    local begin rc left
    begin=$(date +%s)
    left=$(( DEADLINE - begin ))
    if (( left < 15 )); then
        note "$(printf '%-10s %-9s' "$name" skipped) no time left in the ${GPU_CHECK_BUDGET_S:-450} s budget"
        return 0
    fi
    (( limit > left )) && limit=$left
    echo "===== $name (limit ${limit}s): $*" | tee -a "$log"
    timeout --kill-after=15 "$limit" "$@" >>"$log" 2>&1
    rc=$?
    LAST_RC=$rc
    local verdict="ok"
    [[ $rc -ne 0 ]] && verdict="FAILED"
    [[ $rc -eq 124 || $rc -eq 137 ]] && verdict="TIMED OUT"
    printf '%-10s %-9s rc=%-3s %4ss  %s\n' "$name" "$verdict" "$rc" "$(( $(date +%s) - begin ))" \
        "$(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-160)" | tee -a "$SUMMARY"
    return 0
}

# --- 1. environment -------------------------------------------------------------------------------
ENV_LOG="$OUT/env.log"
{
    echo "date: $(date -u)"; echo "host: $(uname -a)"
    command -v nvidia-smi >/dev/null && nvidia-smi || echo "nvidia-smi: not found"
} >"$ENV_LOG" 2>&1

# Data: ./gpu_data (carried), else ./shared/data or ../shared/data (a developer's checkout).
DATA=""
for candidate in "${KP_SHARED_DATA:-}" "$REPO/gpu_data" "$REPO/shared/data" "$REPO/../shared/data"; do
    if [[ -n "$candidate" && -d "$candidate/videos" ]]; then DATA="$(cd "$candidate" && pwd)"; break; fi
done
note "data: ${DATA:-NOT FOUND (run benchmarks/gpu_check_prepare.sh and carry gpu_data)}"

# Wheels first on the path: the image has no PyAV; --target keeps the image's packages untouched.
SITE=/tmp/kp_site
export PYTHONPATH="$REPO"
if compgen -G "$REPO/wheels/*.whl" >/dev/null; then
    step install "$ENV_LOG" 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$SITE" "$REPO"/wheels/*.whl
    if [[ $LAST_RC -eq 0 ]]; then
        export PYTHONPATH="$SITE:$REPO"
    else
        note "install    wheels not installed (see env.log): running with the image's packages only"
    fi
else
    note "install    skipped   no wheels/*.whl: av (extract-frames) may be missing"
fi

step versions "$ENV_LOG" 40 "$PY" - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "triton", "cv2", "av", "numpy", "multiprocess", "pytest"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')} from {getattr(module, '__file__', '?')}")
    except Exception as e:
        print(f"{name}: MISSING ({type(e).__name__}: {e})")
import cv2
print("cv2.optflow (contrib):", hasattr(cv2, "optflow"))
import torch
print("cuda:", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF

CUDA=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
if [[ "$CUDA" != 1 ]]; then
    note "NO CUDA: GPU not measured; tests run in Triton's CPU interpreter, the benchmark does its smoke run, extract-frames is skipped"
fi
export KP_SHARED_DATA="$DATA"

# --- 2. tests on CUDA ------------------------------------------------------------------------------
# test_flow_triton.py runs the compiled kernels when a GPU is visible; tests/conftest.py reads the
# data from $KP_SHARED_DATA.
step tests "$OUT/tests.log" 170 "$PY" -m pytest -q -p no:cacheprovider -rs --durations=10 -s tests/test_flow_triton.py

# --- 3. benchmark ----------------------------------------------------------------------------------
BENCH_ARGS=(--json "$OUT/bench.json" --repeats 2 --max-run-s 8 --budget-s 110)
[[ -n "$DATA" ]] && BENCH_ARGS+=(--video "$DATA/videos/mmaction2_demo.mp4" --flow-data "$DATA/flow")
step bench "$OUT/bench.log" 190 "$PY" benchmarks/bench_gpu_flow.py "${BENCH_ARGS[@]}"

# --- 4. extract-frames on real clips --------------------------------------------------------------
if [[ "$CUDA" == 1 && -n "$DATA" ]]; then
    CLIPS=$(mktemp -d)
    # The clips that decode (the corrupted one would only add an expected per-clip failure).
    for clip in mmaction2_demo.mp4 mmaction2_test.avi decord_flipping_a_pancake.mkv; do
        ln -s "$DATA/videos/$clip" "$CLIPS/$clip"
    done
    FRAMES=$(mktemp -d)/frames
    step extract "$OUT/extract.log" 80 "$PY" -m kinetics_prep extract-frames "$CLIPS" "$FRAMES" --level 1 \
        --task both --flow-backend triton --device cuda --batch-size 128 --workers 1 --no-progress
    {
        echo "===== output"
        for dir in "$FRAMES"/*/; do
            echo "$dir: $(find "$dir" -name 'img_*' | wc -l) RGB, $(find "$dir" -name 'x_*' | wc -l) flow x"
        done
        find "$FRAMES" -name kinetics_prep.json | head -n 1 | xargs -r cat
    } >>"$OUT/extract.log" 2>&1
elif [[ "$CUDA" != 1 ]]; then
    note "extract    skipped   no CUDA"
else
    note "extract    skipped   no data"
fi

# --- 5. flow services (issue #16): end-to-end pairs/s with 1, 4 and all cores, GPU busy share --------
# extract-frames --task both on copies of the 340x256 clip through one flow service on cuda:0; the
# progress bar's postfix (pairs/s, queue, cuda:0 busy share) is printed every few clips.
if [[ "$CUDA" == 1 && -n "$DATA" ]]; then
    step feed "$OUT/feed.log" 150 "$PY" benchmarks/gpu_feed.py --video "$DATA/videos/mmaction2_demo.mp4" \
        --copies 16 --workers 1,4,all --flow-backend triton
elif [[ "$CUDA" != 1 ]]; then
    note "feed       skipped   no CUDA (GPU not measured)"
else
    note "feed       skipped   no data"
fi

# --- 6. summary ------------------------------------------------------------------------------------
{
    echo "----- key figures"
    grep -E "passed|failed|error" "$OUT/tests.log" | tail -n 1
    grep -E "EPE triton" "$OUT/tests.log" | head -n 4
    grep -E "^best triton|GPU not measured|^epe " "$OUT/bench.log"
    grep -iE "pairs/s|frames/s|clips" "$OUT/extract.log" 2>/dev/null | tail -n 3
    grep -E "^feed " "$OUT/feed.log" 2>/dev/null
    echo "total $(( $(date +%s) - START )) s"
} | tee -a "$SUMMARY"
exit 0
