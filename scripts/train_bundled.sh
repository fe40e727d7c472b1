#!/usr/bin/env bash
# Reproduce the bundled styles in weights/ (offline: random features, CPU, one thread each).
# Usage: scripts/train_bundled.sh [starry|shipwreck|matisse ...]   (default: all three, in parallel;
# with 2 cores run "starry shipwreck", then "matisse": about 22 min each on one core)
# Same seed, settings and photos (scikit-image's, minus the held-out samples/content) give the
# same weights on the same machine; float rounding can differ across CPUs and thread counts.
set -euo pipefail
cd "$(dirname "$0")/.."
PHOTOS=runs/photos
[ -d "$PHOTOS" ] || python scripts/export_skimage_photos.py "$PHOTOS"
declare -A STYLE=([starry]=starry_night.jpg [shipwreck]=shipwreck.jpg [matisse]=woman-with-hat-matisse.jpg)
declare -A STEPS=([starry]=600 [shipwreck]=600 [matisse]=600)
export OMP_NUM_THREADS=1
names=("$@"); [ ${#names[@]} -gt 0 ] || names=(starry shipwreck matisse)
for n in "${names[@]}"; do
  styler train --style "samples/styles/${STYLE[$n]}" --content-dir "$PHOTOS" --name "$n" \
    --features random --style-loss sliced --feature-width-divisor 2 --adv-weight 0.05 --tv-weight 1 \
    --upsample bilinear \
    --steps "${STEPS[$n]}" --image-size 128 --style-size 512 --batch-size 4 --seed 0 --workers 0 \
    --val-every 50 --checkpoint-every 50 --preview-every 150 --device cpu \
    --weights-dir weights --run-dir "runs/bundled/$n" --force &
done
wait
