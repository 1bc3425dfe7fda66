#!/usr/bin/env bash
# The recipe of the shipped two-talker model, from nothing to ssl_model/pretrained/two-talker/ (about 70 minutes on a 2-core CPU):
# real speech (examples/prepare_speech.sh), 16,000 training rooms in four FRA-RIR variants plus the seed
# protocol's 400 eval rooms, then configs/pretrained.yaml. Every step resumes: rerun the same command after an
# interruption (shards that verify are kept, training continues from its last saved state).
#
#   bash examples/train_pretrained.sh [RUN_DIR]      # RUN_DIR defaults to runs/pretrained
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/pretrained}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=shards/pretrained

bash examples/prepare_speech.sh
"$PYTHON" -m simulate --out "$OUT/fra" --splits train=4000,eval=400 --no-progress
"$PYTHON" -m simulate --out "$OUT/cal" --splits train=4000 decay=calibrated seed=1 --no-progress
"$PYTHON" -m simulate --out "$OUT/cal_u" --splits train=4000 decay=calibrated uniform_directions=true seed=2 --no-progress
"$PYTHON" -m simulate --out "$OUT/fra_u" --splits train=4000 uniform_directions=true seed=3 --no-progress

resume=()
[ -d "$RUN/states" ] && resume=(--resume)
"$PYTHON" training/train.py --config configs/pretrained.yaml --run-dir "$RUN" "${resume[@]}"
"$PYTHON" -m training.eval.evaluate --run "$RUN" --no-progress
echo "to ship it: cp $RUN/model.safetensors $RUN/config.yaml ssl_model/pretrained/two-talker/"
