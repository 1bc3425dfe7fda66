#!/bin/bash
# Regenerate the RIR shards on a cluster: one array task per rank; task i writes the shards k with
# k % SLURM_ARRAY_TASK_COUNT == i (`python -m simulate` reads both variables from the environment).
# Shard content depends only on (config, seed, split, k), so any task can be rerun: finished shards
# verify and are skipped, and whichever task finishes last completes each split's manifest.
#
#   jid=$(sbatch --parsable examples/slurm_simulate.sh)          # seed protocol into shards/
#   sbatch --dependency=afterok:$jid --wrap ".venv/bin/python -m simulate verify shards"
#   OUT=/scratch/$USER/shards SPLITS=train=100000,eval=2000 sbatch --array=0-31 examples/slurm_simulate.sh
#   WORLD_SIZE=8 sbatch --array=5 examples/slurm_simulate.sh    # rerun task 5 of an 8-task array
#
#SBATCH --job-name=simulate
#SBATCH --array=0-7
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=01:00:00
#SBATCH --output=simulate-%A_%a.out
set -euo pipefail

OUT=${OUT:-shards}
CONFIG=${CONFIG:-configs/simulate.yaml}
SPLITS=${SPLITS:-train=3000,eval=200}
PYTHON=${PYTHON:-.venv/bin/python}

args=(--out "$OUT" --splits "$SPLITS" --workers "${SLURM_CPUS_PER_TASK:-1}" --no-progress)
[[ -f "$CONFIG" ]] && args+=(--config "$CONFIG")
# A resubmitted subset (`--array=5`) has a task count of 1: give the original world size explicitly.
[[ -n "${WORLD_SIZE:-}" ]] && args+=(--rank "$SLURM_ARRAY_TASK_ID" --world-size "$WORLD_SIZE")

exec "$PYTHON" -m simulate "${args[@]}" "$@"
