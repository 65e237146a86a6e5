#!/usr/bin/env bash
# Train HyMoERec, Mamba4Rec and SASRec on Amazon Beauty and MovieLens-1M (one seed each)
# with the configs in configs/, after printing the speed benchmark on a quiet machine.
#   scripts/compare.sh [DATA_DIR] [OUT_DIR]
# Env: BEAUTY_MINUTES / ML1M_MINUTES cap each run's training time (0 = no cap);
#      SETS="key=value ..." adds options to every run (e.g. another learning-rate recipe).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data}
out=${2:-runs/compare}
mkdir -p "$out"
bin=.venv/bin
sets=()
for setting in ${SETS:-}; do sets+=(--set "$setting"); done
$bin/python benchmarks/train_speed.py --dataset ml-1m --data-dir "$data" \
  --models hymoerec mamba4rec sasrec | tee "$out/speed.txt"
for dataset in amazon-beauty ml-1m; do
  for model in hymoerec mamba4rec sasrec; do
    run="$out/$dataset-$model"
    [ -e "$run/final.json" ] && continue
    if [ "$dataset" = ml-1m ]; then minutes=${ML1M_MINUTES:-0}; else minutes=${BEAUTY_MINUTES:-0}; fi
    $bin/hymoerec train --config "configs/$dataset-$model.yaml" --data-dir "$data" \
      --set "train.max_minutes=$minutes" "${sets[@]}" --out "$run" --quiet 2>&1 \
      | tee "$out/$dataset-$model.log"
  done
done
$bin/python benchmarks/train_speed.py --runs "$out"/*/ | tee "$out/time_to_quality.txt"
