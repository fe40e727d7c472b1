#!/usr/bin/env bash
# One GPU check for styler, sized for <= 8 minutes on one H200 with only torch, torchvision,
# pillow, click, rich, tqdm and safetensors installed. Prints each result and writes it to $OUT:
#   apply_bf16.jsonl         apply ms at 1024, 2048, 3840x2160: bf16 + channels_last, styler
#                            fast path vs plain vs TransformerNet, FLOPs, peak memory, % of peak
#   apply_bf16_graphs.jsonl  the same for styler replayed as a CUDA graph
#   apply_bf16_compile.jsonl the same with torch.compile
#   train.jsonl              Trainer steps/s and time breakdown at 128 and 256 px, batch 4,
#                            with the projected time of Johnson's budget (40k steps)
#   quality/result.json      both generators trained at 256 px, batch 4: validation curve and
#                            the training time to validation content+style <= $TARGET_LOSS
#   summary.txt              the headline figures
# Usage (repository root or anywhere):
#   benchmarks/gpu_check.sh             # on the GPU machine
#   benchmarks/gpu_check.sh --dry-run   # tiny sizes on the CPU: checks the script's logic
# Environment: OUT (default ./gpu_out), PYTHON (default python3, the device image's interpreter), DEVICE (cuda; cpu = dry run),
#   TARGET_LOSS (default 2.0), QUALITY_STEPS (default 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.
# Passive OpenMP waiting unless told otherwise (see benchmarks/__init__.py).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
OUT=${OUT:-./gpu_out}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
TARGET_LOSS=${TARGET_LOSS:-2.0}
case "${1:-}" in
  --dry-run) DEVICE=cpu ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac

if [ "$DEVICE" = cpu ]; then
  APPLY_SIZES="32 48x24"; APPLY_REPEATS=1; TRAIN_SIZES="32"; TRAIN_STEPS=1; BATCH=1
  QUALITY_STEPS=${QUALITY_STEPS:-2}; QUALITY_SIZE=32; EVAL_EVERY=1; VAL_SIZE=32; STYLE_SIZE=64
  WIDTH_DIVISOR=8; WORKERS=0; LIMIT=300; GRAPHS=""; COMPILE=""  # compiling C++ on a CPU takes minutes
else
  APPLY_SIZES="1024 2048 3840x2160"; APPLY_REPEATS=30; TRAIN_SIZES="128 256"; TRAIN_STEPS=30; BATCH=4
  QUALITY_STEPS=${QUALITY_STEPS:-2000}; QUALITY_SIZE=256; EVAL_EVERY=100; VAL_SIZE=512; STYLE_SIZE=512
  WIDTH_DIVISOR=1; WORKERS=4; LIMIT=90; GRAPHS="--cuda-graphs"; COMPILE="--compile"
fi
mkdir -p "$OUT"
: > "$OUT/summary.txt"

say() { echo "== $*" | tee -a "$OUT/summary.txt"; }

# step NAME SECONDS ARGS...: run one benchmark module with a time limit, output to $OUT/NAME.jsonl.
# A failed or timed-out step is recorded and the check goes on (one lent GPU, one try); the
# script's exit status is 1 if any step failed.
FAILED=0
step() {
  local name=$1 limit=$2
  shift 2
  say "$name: $*"
  if ! timeout "$limit" "$PYTHON" -m "$@" | tee "$OUT/$name.jsonl"; then
    say "$name FAILED or timed out after ${limit}s"
    FAILED=1
  fi
}

say "started $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), device $DEVICE"
# (torch version, CPU and GPU names are in every JSON row: no extra interpreter start for them)
command -v nvidia-smi >/dev/null && nvidia-smi -L | tee -a "$OUT/summary.txt" || true

APPLY="benchmarks.bench_apply --device $DEVICE --precision bf16 --channels-last --json --repeats $APPLY_REPEATS --sizes $APPLY_SIZES"
step apply_bf16 "$LIMIT" $APPLY
if [ -n "$GRAPHS" ]; then
  step apply_bf16_graphs 60 $APPLY --no-plain --no-baseline $GRAPHS
fi
if [ -n "$COMPILE" ]; then
  step apply_bf16_compile "$LIMIT" $APPLY --no-plain --no-baseline $COMPILE
fi

step train "$LIMIT" benchmarks.bench_train --device "$DEVICE" --sizes $TRAIN_SIZES --steps "$TRAIN_STEPS" \
  --batch-size "$BATCH" --style-size "$STYLE_SIZE" --workers "$WORKERS" --json

step quality 150 benchmarks.compare_quality --device "$DEVICE" --steps "$QUALITY_STEPS" --image-size "$QUALITY_SIZE" \
  --batch-size "$BATCH" --style-size "$STYLE_SIZE" --val-size "$VAL_SIZE" --eval-every "$EVAL_EVERY" \
  --target-loss "$TARGET_LOSS" --feature-width-divisor "$WIDTH_DIVISOR" --workers "$WORKERS" --out "$OUT/quality" > /dev/null

"$PYTHON" - "$OUT" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def rows(name):
    path = out / f"{name}.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines() if l.startswith("{")] if path.exists() else []
for name in ("apply_bf16", "apply_bf16_graphs", "apply_bf16_compile"):
    for r in rows(name):
        print(f"{name} {r['size']}: styler {r['styler_ms']} ms ({r['styler_images_per_s']} img/s, "
              f"{100 * r['styler_fraction_of_peak']:.0f}% of {r['peak_gflops']} GFLOP/s), "
              f"baseline {r.get('baseline_ms')} ms, speedup {r['speedup']}, PSNR vs fp32 {r['styler_psnr_vs_fp32_db']} dB")
for r in rows("train"):
    print(f"train {r['size']} px batch {r['batch_size']}: {r['steps_per_s']} steps/s, 40k steps in "
          f"{40000 / r['steps_per_s'] / 60:.1f} min")
quality = out / "quality" / "result.json"
if quality.exists():
    q = json.loads(quality.read_text())
    for name in ("styler", "transformer_net"):
        r = q[name]
        print(f"quality {name}: {r['steps_per_s']} steps/s, val content+style {r['content_plus_style']:.4f}, "
              f"to {q['target_loss']}: {r['to_target']} (step, train s)")
PY
say "finished $(date -u +%FT%TZ); results in $OUT"
exit "$FAILED"
