#!/usr/bin/env bash
# Reproduce the bundled styles in weights/ (offline: random features, CPU).
# Usage: scripts/train_bundled.sh [starry|shipwreck|matisse ...]   (default: all three)
# Same seed, same settings, same photos (scikit-image's, minus the held-out samples/content).
# Bit-exact on the same machine and thread count; float rounding can differ elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PHOTOS=runs/photos
[ -d "$PHOTOS" ] || python scripts/export_skimage_photos.py "$PHOTOS"
declare -A STYLE=([starry]=starry_night.jpg [shipwreck]=shipwreck.jpg [matisse]=woman-with-hat-matisse.jpg)
declare -A STEPS=([starry]=${STEPS_STARRY:-1000} [shipwreck]=${STEPS_SHIPWRECK:-600} [matisse]=${STEPS_MATISSE:-600})
for name in "${@:-starry shipwreck matisse}"; do
  for n in $name; do
    styler train --style "samples/styles/${STYLE[$n]}" --content-dir "$PHOTOS" --name "$n" \
      --features random --style-loss sliced --feature-width-divisor 2 --adv-weight 0.05 \
      --steps "${STEPS[$n]}" --image-size 128 --style-size 320 --batch-size 4 --seed 0 --workers 1 \
      --device cpu --weights-dir weights
  done
done
