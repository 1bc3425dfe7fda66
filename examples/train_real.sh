#!/usr/bin/env bash
# The recipe of the shipped real-recordings localizer (ssl_model/pretrained/real), from nothing to a run folder:
# real speech (examples/prepare_speech.sh), 24,000 training rooms in six FRA-RIR variants (as written / calibrated
# decay, FRA-RIR's / uniform image directions, and two that add the shoebox's specular early reflections,
# early_images=2) with three sources each and a mic spacing drawn per room from 6 to 16 cm, 400 held-out eval rooms,
# then configs/real.yaml (0-3 talkers that come and go, diffuse and sensor noise, gain and latency mismatch), starting
# from the committed two-talker model's weights (run.init_from=ssl_model/pretrained/two-talker): 7,000 steps, about
# 1 h on a 2-core CPU. A share of every batch stays the clean two-talker scene (mix.clean_prob=0.35: the clean
# accuracy a user of the two-talker model had), and a tenth is band-limited as an 8 kHz recording is
# (mix.bandlimit_prob=0.1). Extra key=value overrides after RUN_DIR go to training (e.g. run.steps=12000). Every step resumes: rerun the same command after an interruption (shards that verify are
# kept, training continues from its last saved state). To ship: copy RUN_DIR/model.safetensors and config.yaml into
# ssl_model/pretrained/real/ and commit them at once (a run folder does not outlive its machine).
#
#   bash examples/train_real.sh [RUN_DIR] [key=value ...]   # RUN_DIR defaults to runs/real
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
"$PYTHON" training/train.py --config configs/real.yaml --run-dir "$RUN" "${resume[@]}" "${@:2}"
echo "weights: $RUN/model.safetensors (score them: python benchmarks/bench_accuracy.py --run $RUN)"
