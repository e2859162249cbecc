#!/usr/bin/env bash
# The GPU benchmarks in one command (one H100, at most 25 minutes):
#
#   1. the device stack (.gpu/setup_device.sh, from ../shared/gpu: see its
#      README; carry .gpu with the command);
#   2. the step-overhead tables: RetinaNet and Faster R-CNN R101 -> R50,
#      batch 8, 800x1216, fp32 and AMP (fp16), with peak memory, one after
#      the other (alone on the GPU: they are timings);
#   3. the GPU proxy preset (benchmarks/proxy_accuracy.py --preset gpu, its
#      runs in parallel), stopped at the suite's deadline; it is resumable,
#      so a second call continues it.
#
# Everything goes to OUT_DIR: <name>.json and <name>.md per table, the logs,
# and summary.md (all tables, with the commands and the machine).
#
# Usage:
#   bash benchmarks/gpu_suite.sh OUT_DIR            # on the GPU machine
#   bash benchmarks/gpu_suite.sh OUT_DIR --dry-run  # on any machine: checks
#       the plan (every config, model and wrapper builds on the CPU, the
#       proxy configs are written), trains and times nothing
#
# Environment: SUITE_MINUTES (default 25) the overall budget;
# PYTHON (default python3 on the GPU machine, .venv/bin/python else);
# STEP_ARGS, extra arguments of every step table (e.g. "--rounds 2
# --steps 10" when the lease is short); PROXY_ARGS, extra arguments of the
# proxy (e.g. "--runs scratch kd mokd-exact --seeds 0 1").
set -euo pipefail

OUT=${1:?usage: bash benchmarks/gpu_suite.sh OUT_DIR [--dry-run]}
DRY=0
[[ ${2:-} == --dry-run ]] && DRY=1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
deadline=$(( $(date +%s) + ${SUITE_MINUTES:-25} * 60 ))
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
for preset in retinanet faster-rcnn; do
    for amp in "" --amp; do
        name=step_${preset}${amp:+_amp}
        run "$name" "$PY" benchmarks/step_overhead.py --preset "$preset" \
            $amp $PLAN ${STEP_ARGS:-} --out "$OUT/$name.json" || status=1
    done
done

# the proxy: what is left of the budget, less 1 minute for the report
left=$(( deadline - $(date +%s) - 60 ))
if (( DRY )); then
    run proxy_gpu "$PY" benchmarks/proxy_accuracy.py --preset gpu --plan \
        ${PROXY_ARGS:-} --work-dir "$OUT/proxy_gpu" || status=1
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
