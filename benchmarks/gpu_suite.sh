#!/usr/bin/env bash
# The GPU benchmarks in one command, sized for a 15-minute device lease
# (start-up included): the step tables in at most SUITE_MINUTES (default
# 10) of device time.
#
#   1. the device stack (.gpu/setup_device.sh, from ../shared/gpu: see its
#      README; carry .gpu with the command);
#   2. the step-overhead tables, every method with its CUDA peak memory,
#      most wanted first: RetinaNet R101 -> R50 fp32, RetinaNet AMP (fp16),
#      Faster R-CNN AMP, Faster R-CNN fp32 (batch 8, 800x1216; alone on the
#      GPU, one after the other). Each table runs under a timeout of what is
#      left of the budget, so the suite never overruns it; a table that
#      does not fit is reported as cut;
#   3. optional (PROXY=1): the GPU proxy preset (benchmarks/proxy_accuracy.py
#      --preset gpu) in what is left, stopped at the deadline; it is
#      resumable, so a second call with the same OUT_DIR continues it.
#
# Everything goes to OUT_DIR: <name>.json and <name>.md per table, the logs,
# and summary.md (all tables, with the commands and the machine).
#
# Usage:
#   bash benchmarks/gpu_suite.sh OUT_DIR            # on the GPU machine
#   bash benchmarks/gpu_suite.sh OUT_DIR --dry-run  # on any machine: checks
#       the plan (every config, model and wrapper builds on the CPU, the
#       proxy configs are written) and estimates the device time of the
#       step tables from the H100 timings recorded in
#       benchmarks/results/gpu/; trains and times nothing
#
# Environment: SUITE_MINUTES (default 10) the budget of the step tables
# (and of the proxy, when PROXY=1); PYTHON (default python3 on the GPU
# machine, .venv/bin/python else); STEP_ARGS (default "--rounds 2 --steps 6
# --warmup 2"), the arguments of every step table; PROXY=1 runs the proxy;
# PROXY_ARGS, extra arguments of the proxy (e.g. "--runs scratch kd
# mokd-exact --seeds 0 1").
set -euo pipefail

OUT=${1:?usage: bash benchmarks/gpu_suite.sh OUT_DIR [--dry-run]}
DRY=0
[[ ${2:-} == --dry-run ]] && DRY=1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
deadline=$(( $(date +%s) + ${SUITE_MINUTES:-10} * 60 ))
STEP_ARGS=${STEP_ARGS:---rounds 2 --steps 6 --warmup 2}
TABLES="retinanet: retinanet:--amp faster-rcnn:--amp faster-rcnn:"
summary=$OUT/summary.md

if (( DRY )); then
    PY=${PYTHON:-$ROOT/.venv/bin/python}
    [[ -x $PY ]] || PY=python3
    PLAN=--plan
else
    if [[ ! -f .gpu/setup_device.sh ]]; then
        echo "[suite] .gpu/setup_device.sh missing: copy ../shared/gpu to .gpu and carry it (../shared/gpu/README.md)" >&2
        exit 1
    fi
    # shellcheck disable=SC1091
    source .gpu/setup_device.sh
    PY=${PYTHON:-python3}
    PLAN=
fi

{
    echo "# GPU suite, $(date -u +%Y-%m-%dT%H:%MZ)$( ((DRY)) && echo ' (dry run)')"
    echo
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); $("$PY" -c 'import torch; print("torch", torch.__version__, "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA")')"
    echo
} > "$summary"

run() {  # run NAME CMD...: logs to OUT/NAME.log, markdown table to OUT/NAME.md
    local name=$1; shift
    echo "[suite] $name: $*"
    local start=$(date +%s)
    if ! "$@" > "$OUT/$name.log" 2>&1; then
        echo "[suite] $name failed; tail of $OUT/$name.log:" >&2
        tail -n 30 "$OUT/$name.log" >&2
        return 1
    fi
    grep '^|' "$OUT/$name.log" > "$OUT/$name.md" || true
    {
        echo "## $name ($(( $(date +%s) - start )) s)"
        echo
        echo "    $*"
        echo
        cat "$OUT/$name.md"
        echo
    } >> "$summary"
}

status=0
if (( DRY )); then  # the device time the tables would take
    "$PY" benchmarks/step_overhead.py --estimate $TABLES $STEP_ARGS \
        --budget $(( ${SUITE_MINUTES:-10} * 60 )) | tee -a "$summary"
fi
for table in $TABLES; do
    preset=${table%%:*}
    amp=${table#*:}
    name=step_${preset}${amp:+_amp}
    left=$(( deadline - $(date +%s) ))
    if (( ! DRY && left < 60 )); then
        echo "[suite] $name cut: ${left} s left of the budget" | tee -a "$summary"
        status=1
        continue
    fi
    limit=()
    (( DRY )) || limit=(timeout --signal=INT "$left")
    run "$name" "${limit[@]}" "$PY" benchmarks/step_overhead.py \
        --preset "$preset" $amp $PLAN $STEP_ARGS --out "$OUT/$name.json" ||
        status=1
done

# the proxy (optional): what is left of the budget
left=$(( deadline - $(date +%s) - 30 ))
if (( DRY )); then
    run proxy_gpu "$PY" benchmarks/proxy_accuracy.py --preset gpu --plan \
        ${PROXY_ARGS:-} --work-dir "$OUT/proxy_gpu" || status=1
elif [[ ${PROXY:-0} != 1 ]]; then
    echo "[suite] the proxy is optional (PROXY=1) and was not run" | tee -a "$summary"
elif (( left > 120 )); then
    run proxy_gpu timeout --signal=INT "$left" "$PY" \
        benchmarks/proxy_accuracy.py --preset gpu ${PROXY_ARGS:-} \
        --work-dir "$OUT/proxy_gpu" --results "$OUT/proxy_gpu.json" ||
        echo "[suite] the proxy stopped at the deadline; rerun the suite with the same OUT_DIR to continue it" | tee -a "$summary"
else
    echo "[suite] no time left for the proxy" | tee -a "$summary"
fi

echo "[suite] done: $summary"
exit $status
