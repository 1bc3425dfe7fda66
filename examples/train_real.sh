#!/usr/bin/env bash
# The recipe of the real-recordings localizer, from nothing to a run folder: real speech
# (examples/prepare_speech.sh), 16,000 training rooms in four FRA-RIR variants with three sources each and a mic
# spacing drawn per room from 6 to 16 cm, 400 held-out eval rooms, then configs/real.yaml (0-3 talkers that come
# and go, diffuse and sensor noise, gain and latency mismatch), starting from the shipped model's weights
# (run.init_from); 7,000 steps took 1 h 34 min on a 2-core CPU. Stage 2 fine-tunes that run for 6,000 steps
# (about 1 h) with two more room variants that add the shoebox's specular early reflections (early_images=2: an
# image-source room's floor and ceiling echoes otherwise read as extra talkers) and a quarter of every batch kept as
# clean two-talker scenes (mix.clean_prob); the eval set stays the real-scene mix. Every step resumes: rerun the same
# command after an interruption (shards that verify are kept, training continues from its last saved state).
#
#   bash examples/train_real.sh [RUN_DIR]      # RUN_DIR defaults to runs/real; stage 2 writes RUN_DIR_ft
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/real}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=shards/real
ROOMS="num_sources=3 mic_spacing_range=[0.06,0.16] min_source_separation_deg=6"

bash examples/prepare_speech.sh
"$PYTHON" -m simulate --out "$OUT/fra" --splits train=4000,eval=400 $ROOMS --no-progress
"$PYTHON" -m simulate --out "$OUT/cal" --splits train=4000 decay=calibrated seed=1 $ROOMS --no-progress
"$PYTHON" -m simulate --out "$OUT/fra_u" --splits train=4000 uniform_directions=true seed=2 $ROOMS --no-progress
"$PYTHON" -m simulate --out "$OUT/cal_u" --splits train=4000 decay=calibrated uniform_directions=true seed=3 $ROOMS --no-progress
"$PYTHON" -m simulate --out "$OUT/fra_ue" --splits train=4000 uniform_directions=true early_images=2 seed=5 $ROOMS --no-progress
"$PYTHON" -m simulate --out "$OUT/cal_ue" --splits train=4000 decay=calibrated uniform_directions=true early_images=2 seed=4 \
    $ROOMS --no-progress

resume=()
[ -d "$RUN/states" ] && resume=(--resume)
"$PYTHON" training/train.py --config configs/real.yaml --run-dir "$RUN" "${resume[@]}"

resume=()
[ -d "${RUN}_ft/states" ] && resume=(--resume)
"$PYTHON" training/train.py --config configs/real.yaml --run-dir "${RUN}_ft" "${resume[@]}" \
    run.init_from="$RUN" run.steps=6000 optim.lr=0.0005 optim.warmup_steps=100 mix.clean_prob=0.25 eval.every=2000 \
    "data.train_glob=$OUT/{fra,cal,fra_u,cal_u,fra_ue,cal_ue}/train/train-*.tar"
echo "weights: ${RUN}_ft/model.safetensors (score them: python benchmarks/bench_accuracy.py --run ${RUN}_ft)"
