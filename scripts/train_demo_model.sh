#!/usr/bin/env bash
# Train the demo weights shipped in simtrack_ros/weights/demo_small.pth (model card:
# docs/demo-model.md), from nothing, with the project's own tools:
#   1. simtrack-synth writes a synthetic maritime dataset (train/val/test splits, disjoint seeds);
#   2. simtrack-finetune trains the 'small' config from random weights, box and multi-label
#      challenge heads together (preset scratch);
#   3. simtrack-calibrate fits the challenge calibration (head logits + the tracker's measured
#      cues) on the 'calib' split, tracking at the demo's search factor, and writes the best
#      checkpoint with it, without its training state, into the package.
# Usage: scripts/run bash scripts/train_demo_model.sh [OUT]   (default runs/demo_model)
# Environment: EPOCHS, SAMPLES_PER_EPOCH, SEED to shorten or vary the run (the shipped weights
# used the defaults below); SEARCH_FACTOR (default 3, the demo's: DEMO_SEARCH_FACTOR in
# ros/model_loading.py, chosen on the 'tune' split, docs/demo-model.md). 57 minutes measured
# from a fresh clone on a 2-core CPU (it reproduced the shipped weights exactly); minutes on a GPU. A killed run resumes from last.pth when started again (the same epochs result). Many short
# sequences generalise better than few long ones: 48 x 150 frames over-fitted the challenge head
# (validation loss rose from epoch 3), 160 x 60 still did (from epoch 4), hence 640 x 30.
# The held-out splits (never trained on) have longer sequences, 60 frames: calib (192, the
# calibration fit) here; test (64, the scores) and tune (48, where the search factor was chosen)
# come with the evaluation commands printed at the end (docs/demo-model.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/runs/demo_model}"
SEED="${SEED:-2026}"
EPOCHS="${EPOCHS:-80}"
SEARCH_FACTOR="${SEARCH_FACTOR:-3}"
SAMPLES_PER_EPOCH="${SAMPLES_PER_EPOCH:-1600}"
DATA="$OUT/data"
start=$SECONDS

if [ ! -f "$DATA/train/list.txt" ]; then
  simtrack-synth "$DATA" --splits train=640,val=40 --frames 30 --size 640x360 \
    --seed "$SEED" --workers "$(nproc)" --no-progress
fi
if [ ! -f "$DATA/calib/list.txt" ]; then
  simtrack-synth "$DATA" --splits calib=192 --frames 60 --size 640x360 \
    --seed "$SEED" --workers "$(nproc)" --no-progress
fi
echo "[demo-model] data ready after $((SECONDS - start)) s"

resume=()
if [ -f "$OUT/train/last.pth" ]; then
  resume=(--resume "$OUT/train/last.pth")
fi
simtrack-finetune --data_dir "$DATA" --out "$OUT/train" --preset scratch --task joint \
  --config small --multi_label --epochs "$EPOCHS" --samples_per_epoch "$SAMPLES_PER_EPOCH" \
  --schedule step --lr_drop_epochs 30 --lr_gamma 0.3 --weight_decay 0.05 \
  --val_samples 400 --seed "$SEED" --num_workers 1 "${resume[@]}"
echo "[demo-model] trained after $((SECONDS - start)) s"

mkdir -p "$ROOT/simtrack_ros/weights"
# The shipped file keeps the model, its metadata and the calibration, not the training state.
convert_checkpoint weights-only "$OUT/train/best.pth" "$OUT/best_weights.pth"
simtrack-calibrate "$DATA" --split calib --weights "$OUT/best_weights.pth" \
  --search-factor "$SEARCH_FACTOR" --workers "$(nproc)" --no-progress \
  --out "$ROOT/simtrack_ros/weights/demo_small.pth"
echo "[demo-model] wrote simtrack_ros/weights/demo_small.pth ($(du -h \
  "$ROOT/simtrack_ros/weights/demo_small.pth" | cut -f1)) in $((SECONDS - start)) s"
echo "[demo-model] to score it on held-out sequences:"
echo "  simtrack-synth $DATA --splits test=64,tune=48 --frames 60 --size 640x360 --seed $SEED"
echo "  simtrack-eval $DATA --split test --weights simtrack_ros/weights/demo_small.pth \\"
echo "    --search-factor $SEARCH_FACTOR --workers $(nproc) --out $OUT/eval"
