#!/usr/bin/env bash
# Issue 19 in one run: prove the project's CUDA paths and measure them, every step time-boxed.
#
#   bash benchmarks/gpu_check.sh              # on the GPU machine, from the repository root (about 9 minutes)
#   bash benchmarks/gpu_check.sh --dry-run    # anywhere: every step on the CPU, tiny sizes, CUDA hidden (or DRY_RUN=1)
#   bash benchmarks/gpu_check.sh --wheels     # on a machine with PyPI: the wheels the GPU machine lacks, into .whl/
#
# Output, under $OUT (default ./gpu_out): gpu_check.log (every command and its whole output), summary.json (each
# step's status and seconds, every measured figure, each headline figure beside its target; rewritten after every
# step, so a run cut short still leaves one), profile_seed.txt and profile_shipped.txt (torch.profiler's top
# kernels of a training step), and, when step 5 runs, step5_metrics.jsonl, step5_model.safetensors and
# step5_accuracy.json: at most 8 files, all at the top of $OUT, as the device tool returns them.
#
# The environment (step 0). Assumed of the GPU machine (the device tool's nvidia-h200, /work/.library/device/
# KINDS.md): the working tree arrives without .venv, nothing can be downloaded there, and its python3 (3.12) holds
# torch 2.11.0+cu130, torchaudio, numpy, scipy, accelerate, einops, safetensors, pyyaml, tqdm, matplotlib,
# tensorboard and pytest, but not webdataset (braceexpand), soundfile (cffi, pycparser) or pyroomacoustics. So:
#   - where .venv imports torch, webdataset and soundfile, it is used (a development machine; the dry run);
#   - else, where .whl/ holds wheels, they are installed offline into a scratch folder put on PYTHONPATH beside
#     the repository, and python3 (or $GPU_CHECK_PYTHON) runs everything: run `--wheels` first where PyPI is
#     reachable (it downloads constraints.txt's versions for CPython 3.12, manylinux x86-64) and carry .whl;
#   - else python3 as it is, where it imports every package; else `make install` (needs PyPI; constraints.txt).
#
# Steps, in order (the whole within GPU_CHECK_BUDGET_S seconds, default 540; a command that would not fit is not
# started and says so; GPU_CHECK_STEPS="2 4" runs a subset, e.g. for a rerun; step 0 always runs):
#   0  nvidia-smi, versions of python, torch, CUDA, cuDNN and the packages; the environment as above.
#   1  pytest -m gpu on the test files that hold gpu tests (simulate, mixing and the batch builder CUDA == CPU,
#      a bf16 training step, resume on CUDA, the model's autocast and torch.compile).
#   2  bench_simulate on CUDA (seed protocol, batches of 1024 and 8192 scenes): scenes/s, target >= 10,000; then
#      the shard set for steps 3-5 written by `python -m simulate --device cuda` (timed: scenes/s end to end).
#   3  bench_pipeline on CUDA (stream + reservoirs + mixing, configs/train.yaml, batch 64 and 256): samples/s,
#      target >= 3x the training rate at the same batch.
#   4  bench_train on CUDA, bf16: the seed size (configs/train.yaml) and the shipped preset (configs/pretrained.yaml,
#      synthetic speech), eager and torch.compile, two batch sizes each: samples/s, peak memory, FLOPs and share of
#      the bf16 peak (target >= 20,000 samples/s for the seed size); torch.profiler summaries of one eager step of
#      each. Most informative runs first, so a short budget drops the least.
#   5  If time remains and speech shards exist (GPU_CHECK_SPEECH, default shards/speech, holding train/ and eval/;
#      examples/prepare_speech.sh fetches them from the network, so the GPU machine has them only if carried): the
#      shipped recipe's rooms simulated on CUDA (GPU_CHECK_ROOMS per variant, default 1000), about 3 minutes of
#      configs/pretrained.yaml training (steps from step 4's batch-16 rate), scored by bench_accuracy (set fra)
#      beside the shipped model. Skipped otherwise.
# The dry run shrinks every size, hides CUDA (CUDA_VISIBLE_DEVICES=""), runs what can run on the CPU (the CUDA
# figures then read "skipped: no CUDA"), and trains step 5 for 3 steps on synthetic speech, unscored (on the
# speech shards GPU_CHECK_SPEECH names, scored on 4 mixtures, when that variable is set).
set -uo pipefail  # not -e: a failed command is recorded and the next one runs

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
DRY=${DRY_RUN:-0}
MODE=check
for arg in "$@"; do
    case $arg in
        --dry-run) DRY=1 ;;
        --wheels) MODE=wheels ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done

# The packages the GPU machine's image lacks (KINDS.md), at the versions constraints.txt pins.
WHEELS=(webdataset braceexpand soundfile cffi pycparser pyroomacoustics)
if [ "$MODE" = wheels ]; then
    pip_python=${PYTHON:-python3}
    [ -x .venv/bin/python ] && pip_python=.venv/bin/python
    mkdir -p .whl
    for name in "${WHEELS[@]}"; do
        pin=$(grep -i "^$name==" constraints.txt) || { echo "constraints.txt pins no $name" >&2; exit 1; }
        rm -f .whl/"$name"-*.whl .whl/"${name^}"-*.whl  # one version of each: two stop the offline install
        "$pip_python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$pin" || exit 1
    done
    ls -la .whl
    echo "carry .whl with the run (the device tool's carry: [\".whl\"])"
    exit 0
fi

OUT=${OUT:-$ROOT/gpu_out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
RES=$WORK/results
mkdir -p "$RES"
LOG=$OUT/gpu_check.log
: > "$LOG"
: > "$WORK/status.tsv"
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-540}
[ "$DRY" = 1 ] && BUDGET=${GPU_CHECK_BUDGET_S:-600}  # two loaded CPU cores: slower than the GPU machine
DEADLINE=$((START + BUDGET))
RESERVE=5  # seconds kept for the last summary
SELECTED=" ${GPU_CHECK_STEPS:-0 1 2 3 4 5} "
SPEECH=${GPU_CHECK_SPEECH:-shards/speech}
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore::DeprecationWarning
if [ "$DRY" = 1 ]; then
    export CUDA_VISIBLE_DEVICES=""
fi

say() { echo "$*" | tee -a "$LOG"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

STEP_NOTES=()
STEP_FAILED=0
note() { STEP_NOTES+=("$1"); say "    $1"; }

# run NAME CAP MIN CMD...: CMD under `timeout` (its process group: workers and subprocesses too), for at most CAP
# seconds and never past the budget; with fewer than MIN seconds left it is not started. Output is appended to the
# log and kept in $WORK/NAME.out; its last line that starts with '{' becomes $RES/NAME.json. Sets RC.
run() {
    local name=$1 cap=$2 min=$3
    shift 3
    local left=$((DEADLINE - $(date +%s) - RESERVE))
    local t=$((cap < left ? cap : left))
    if ((t < min)); then
        RC=200
        note "$name: skipped: time box (${left} s of the budget left, needs ${min})"
        return
    fi
    say "--- $name (timeout ${t} s): $*"
    local t0
    t0=$(now)
    timeout -k 10 "$t" "$@" 2>&1 | tee -a "$LOG" > "$WORK/$name.out"
    RC=${PIPESTATUS[0]}
    local dt
    dt=$(since "$t0")
    grep '^{' "$WORK/$name.out" | tail -n 1 > "$RES/$name.json" || rm -f "$RES/$name.json"
    case $RC in
        0) note "$name: ok (${dt} s)" ;;
        124|137) STEP_FAILED=1; note "$name: timed out after ${t} s" ;;
        *) STEP_FAILED=1; note "$name: failed (exit $RC, ${dt} s); its last lines:"; tail -n 12 "$WORK/$name.out" ;;
    esac
}

cat > "$WORK/summary.py" <<'PY'
"""Gather the steps' statuses and JSON results into summary.json, each headline figure beside its target."""
import json
import os
import re
import sys
import time
from pathlib import Path

work, out = Path(os.environ["GC_WORK"]), Path(os.environ["GC_OUT"])
results = {}
for path in sorted((work / "results").glob("*.json")):
    try:
        results[path.stem] = json.loads(path.read_text())
    except ValueError:
        results[path.stem] = {"unparsed": path.read_text()[-400:]}
steps = []
for line in (work / "status.tsv").read_text().splitlines():
    step, status, seconds, notes = (line.split("\t") + [""] * 4)[:4]
    steps.append({"step": step, "status": status, "seconds": float(seconds or 0),
                  "notes": [n for n in notes.split(" | ") if n]})
pytest_out = work / "pytest_gpu.out"
if pytest_out.exists():
    lines = [l for l in pytest_out.read_text().splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", l)]
    if lines:
        counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)", lines[-1])}
        results["pytest_gpu"] = {"summary": lines[-1].strip("= "), **counts}


def cuda(name: str) -> bool:
    r = results.get(name, {})
    return str(r.get("device", "")).startswith("cuda") or "ours_scenes_per_s_cuda" in r


def best(prefix: str, key: str):
    found = [(r[key], n) for n, r in results.items()
             if n.startswith(prefix) and cuda(n) and isinstance(r.get(key), (int, float))]
    return max(found) if found else (None, None)


targets = []
value, name = best("sim_", "ours_scenes_per_s_cuda")
targets.append({"figure": "simulate on CUDA: seed-protocol scenes/s (bench_simulate)", "target": ">= 10000",
                "value": value, "from": name, "met": None if value is None else value >= 10000})
if "shards" in results and results["shards"].get("device", "").startswith("cuda"):
    targets.append({"figure": "python -m simulate --device cuda: scenes/s written to shards, end to end",
                    "target": None, "value": results["shards"].get("scenes_per_s"), "from": "shards", "met": None})
value, name = best("train_seed_", "samples_per_s")
targets.append({"figure": "training, seed size, bf16: samples/s (best of eager / compile, batch sizes)",
                "target": ">= 20000 on one H100-class GPU", "value": value, "from": name,
                "met": None if value is None else value >= 20000,
                "fraction_of_bf16_peak": results[name].get("fraction_of_peak") if name else None,
                "peak_memory_mb": results[name].get("peak_memory_mb") if name else None})
value, name = best("train_shipped_", "samples_per_s")
targets.append({"figure": "training, shipped preset (configs/pretrained.yaml), bf16: samples/s (best)",
                "target": None, "value": value, "from": name, "met": None,
                "fraction_of_bf16_peak": results[name].get("fraction_of_peak") if name else None})
for pipe in sorted((n for n in results if n.startswith("pipe_seed_b") and cuda(n)), key=lambda n: int(n.rsplit("_b", 1)[1])):
    batch = pipe.rsplit("_b", 1)[1]
    train, train_name = best(f"train_seed_b{batch}_", "samples_per_s")
    data = results[pipe].get("samples_per_s")
    ratio = data / train if data and train else None
    targets.append({"figure": f"data path at batch {batch}: samples/s over the seed size's training samples/s",
                    "target": ">= 3", "value": ratio, "data_samples_per_s": data, "train_samples_per_s": train,
                    "from": [pipe, train_name], "met": None if ratio is None else ratio >= 3})
summary = {"dry_run": os.environ.get("GC_DRY") == "1", "started": os.environ["GC_STARTED"],
           "budget_s": int(os.environ["GC_BUDGET"]), "elapsed_s": round(time.time() - int(os.environ["GC_START"]), 1),
           "machine": results.get("machine"), "steps": steps, "targets": targets,
           "results": {k: v for k, v in results.items() if k != "machine"}}
tmp = out / "summary.json.tmp"
tmp.write_text(json.dumps(summary, indent=1) + "\n")
tmp.replace(out / "summary.json")
if "--print" in sys.argv:
    print(f"gpu_check: {'dry run, ' if summary['dry_run'] else ''}{summary['elapsed_s']:.0f} s of {summary['budget_s']}")
    for s in steps:
        print(f"  step {s['step']}: {s['status']} ({s['seconds']:.0f} s)")
    for t in targets:
        v = t["value"]
        shown = "not measured" if v is None else f"{v:,.3g}" if v < 100 else f"{v:,.0f}"
        print(f"  {t['figure']}: {shown}" + (f" (target {t['target']}: {'met' if t['met'] else 'missed'})"
                                              if t["target"] and v is not None else ""))
PY
export GC_WORK=$WORK GC_OUT=$OUT GC_DRY=$DRY GC_START=$START GC_BUDGET=$BUDGET
GC_STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
export GC_STARTED
SPY=python3  # the summary's python until step 0 has chosen one
summarize() { "$SPY" "$WORK/summary.py" "$@" || say "(summary.json could not be written)"; }

# step NUMBER TITLE: start a step (its notes and failure flag reset); end_step closes it with its status.
STEP=""
STEP_T0=0
begin() {
    STEP=$1
    STEP_NOTES=()
    STEP_FAILED=0
    STEP_T0=$(now)
    say ""
    say "=== step $1: $2 ($(( DEADLINE - $(date +%s) )) s of the budget left)"
}
end_step() {  # end_step [STATUS]: default ok, or failed when a command failed
    local status=${1:-}
    [ -z "$status" ] && { [ "$STEP_FAILED" = 1 ] && status=failed || status=ok; }
    local joined
    joined=$(IFS='|'; echo "${STEP_NOTES[*]:-}" | sed 's/|/ | /g')
    printf '%s\t%s\t%s\t%s\n' "$STEP" "$status" "$(since "$STEP_T0")" "$joined" | tr -d '\r' >> "$WORK/status.tsv"
    say "=== step $STEP: $status"
    summarize
}
selected() { [[ $SELECTED == *" $1 "* ]]; }
have_cuda() { [ "$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null)" = 1 ]; }

# ------------------------------------------------------------------------------------------------------------
begin 0 "machine and environment"
say "dry run: $DRY; OUT=$OUT; scratch $WORK; budget ${BUDGET} s"
if command -v nvidia-smi > /dev/null; then
    run nvidia_smi 30 5 nvidia-smi
else
    note "nvidia-smi: not on this machine"
fi
PY=""
if [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch, webdataset, soundfile' 2> /dev/null; then
    PY=$ROOT/.venv/bin/python
    note "environment: .venv"
elif compgen -G ".whl/*.whl" > /dev/null; then
    base=${GPU_CHECK_PYTHON:-python3}
    run install_wheels 120 10 "$base" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" .whl/*.whl
    PY=$(command -v "$base")
    export PYTHONPATH="$WORK/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    note "environment: $PY with .whl/ installed offline into $WORK/site"
elif ${GPU_CHECK_PYTHON:-python3} -c 'import torch, webdataset, soundfile' 2> /dev/null; then
    PY=$(command -v "${GPU_CHECK_PYTHON:-python3}")
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    note "environment: $PY as it is (it has every package)"
else
    note "no .venv, no .whl/ and python3 lacks packages: make install (needs PyPI; on the GPU machine carry .whl" \
        "made by --wheels instead)"
    run make_install 120 30 make install
    PY=$ROOT/.venv/bin/python
fi
run machine 90 10 "$PY" - <<'PY'
import importlib, json, os, platform, sys
import torch
info = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(), "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(device_name=p.name, capability=f"{p.major}.{p.minor}", multiprocessors=p.multi_processor_count,
                memory_gib=round(p.total_memory / 2**30, 1), bf16_supported=torch.cuda.is_bf16_supported(),
                device_count=torch.cuda.device_count())
missing = []
for name in ("torchaudio", "numpy", "scipy", "webdataset", "einops", "accelerate", "yaml", "soundfile", "tqdm",
             "safetensors", "matplotlib", "tensorboard", "pytest", "pyroomacoustics", "triton"):
    try:
        info[name] = getattr(importlib.import_module(name), "__version__", "present")
    except Exception as err:  # pyroomacoustics (bench_accuracy) and triton (torch.compile on CUDA) are optional here
        info[name] = None
        missing.append(name)
info["missing"] = missing
print(json.dumps(info))
required = set(missing) - {"pyroomacoustics", "triton"}
sys.exit(f"missing: {sorted(required)}" if required else 0)
PY
env_ok=$RC
[ "$env_ok" = 0 ] && SPY=$PY
if [ "$env_ok" != 0 ]; then
    end_step "failed: the environment is incomplete; nothing else can run"
    summarize --print
    exit 1
fi
end_step
if have_cuda; then CUDA=1; else CUDA=0; fi
[ "$DRY" = 1 ] || [ "$CUDA" = 1 ] || say "warning: no CUDA device; the CUDA figures will read skipped: no CUDA"
DEV=cpu
[ "$CUDA" = 1 ] && DEV=cuda

# ------------------------------------------------------------------------------------------------------------
if selected 1; then
    begin 1 "pytest -m gpu"
    mapfile -t gpu_files < <(grep -l 'pytest.mark.gpu' tests/test_*.py)
    note "files: ${gpu_files[*]}"
    cap=200
    [ "$DRY" = 1 ] && cap=300
    run pytest_gpu "$cap" 30 "$PY" -m pytest -q -m gpu -p no:cacheprovider -o addopts="" -rfEs "${gpu_files[@]}"
    if [ "$CUDA" = 0 ] && [ "$RC" = 0 ]; then
        end_step "skipped: no CUDA (every gpu test collected and skipped)"
    else
        end_step
    fi
fi

# The shard set steps 3-5 read: the seed protocol, written on the device (CUDA on the GPU), timed.
SH=$WORK/shards
make_shards() {
    [ -d "$SH/train" ] && return 0
    local train=2048 size=128 extra=()
    [ "$DRY" = 1 ] && { train=64; size=16; extra=(--workers 1); }
    local t0
    t0=$(now)
    run shards_write 150 20 "$PY" -m simulate --out "$SH" --splits "train=$train,eval=32" --device "$DEV" \
        --no-progress "${extra[@]}" "shard_size=$size"
    if [ "$RC" = 0 ]; then
        local dt
        dt=$(since "$t0")
        printf '{"scenes": %d, "seconds": %s, "scenes_per_s": %s, "device": "%s", "shard_size": %d}\n' \
            "$((train + 32))" "$dt" "$(awk -v n=$((train + 32)) -v s="$dt" 'BEGIN { printf "%.1f", n / s }')" \
            "$DEV" "$size" > "$RES/shards.json"
        return 0
    fi
    rm -rf "$SH"
    return 1
}

# ------------------------------------------------------------------------------------------------------------
if selected 2; then
    begin 2 "simulate on CUDA (bench_simulate) and the shards for steps 3-5"
    if [ "$CUDA" = 1 ]; then
        run sim_b1024 90 20 "$PY" benchmarks/bench_simulate.py --no-cpu --pra-scenes 0 --scenes 1024 --repeats 5 --json
        run sim_b8192 120 30 "$PY" benchmarks/bench_simulate.py --no-cpu --pra-scenes 0 --scenes 8192 --repeats 3 --json
    else
        run sim_cpu 120 20 "$PY" benchmarks/bench_simulate.py --scenes 8 --repeats 1 --pra-scenes 0 --one-thread --json
        note "simulate on CUDA: skipped: no CUDA"
    fi
    make_shards
    if [ "$CUDA" = 0 ] && [ "$STEP_FAILED" = 0 ]; then end_step "skipped: no CUDA (the CPU path ran)"; else end_step; fi
fi

# Overrides that shrink the data path for the dry run (2 CPU cores): small reservoirs, one worker, batch 2.
DRY_DATA=(data.num_workers=1 data.rir_reservoir=16 data.rir_refresh=2 speech.reservoir=16 speech.refresh=4)
SEED=(--config configs/train.yaml)

# ------------------------------------------------------------------------------------------------------------
if selected 3; then
    begin 3 "data path on CUDA (bench_pipeline: stream + reservoirs + mixing)"
    if make_shards; then
        if [ "$CUDA" = 1 ]; then
            for b in 64 256; do
                run "pipe_seed_b$b" 90 20 "$PY" benchmarks/bench_pipeline.py "${SEED[@]}" --shards "$SH" \
                    --device cuda --steps 50 --json "run.batch_size=$b"
            done
        else
            run pipe_seed_b2 120 20 "$PY" benchmarks/bench_pipeline.py "${SEED[@]}" --shards "$SH" --device cpu \
                --steps 2 --json run.batch_size=2 "${DRY_DATA[@]}"
            note "data path on CUDA: skipped: no CUDA"
        fi
    else
        note "no shards: the data path was not measured"
    fi
    if [ "$CUDA" = 0 ] && [ "$STEP_FAILED" = 0 ]; then end_step "skipped: no CUDA (the CPU path ran)"; else end_step; fi
fi

# ------------------------------------------------------------------------------------------------------------
# train_run NAME CAP MIN SIZE ARGS...: one bench_train run (bf16, FLOPs counted) on the step's device; SIZE seed
# (configs/train.yaml) or shipped (configs/pretrained.yaml on synthetic speech: no speech shards needed). ARGS:
# options first, then key=value overrides (argparse takes no option after the overrides).
train_run() {
    local name=$1 cap=$2 min=$3 size=$4 config=(--config configs/train.yaml) keys=()
    shift 4
    [ "$size" = shipped ] && { config=(--config configs/pretrained.yaml); keys=(speech.source=synthetic data.train_glob=); }
    run "$name" "$cap" "$min" "$PY" benchmarks/bench_train.py --shards "$SH" --device "$DEV" --bf16 --flops --json \
        "${config[@]}" "$@" "${keys[@]}"
}
if selected 4; then
    begin 4 "training throughput on CUDA (bench_train, bf16, eager and torch.compile, two batch sizes)"
    if make_shards; then
        if [ "$CUDA" = 1 ]; then
            # Most informative first: the larger batch of each size, eager (profiled) then compiled.
            train_run train_seed_b256_eager 90 25 seed --steps 20 --profile "$OUT/profile_seed.txt" \
                run.batch_size=256
            train_run train_seed_b256_compile 180 60 seed --steps 20 --compile run.batch_size=256
            train_run train_shipped_b1024_eager 90 25 shipped --steps 20 \
                --profile "$OUT/profile_shipped.txt" run.batch_size=1024
            train_run train_shipped_b1024_compile 180 60 shipped --steps 20 --compile run.batch_size=1024
            train_run train_seed_b64_eager 60 20 seed --steps 30 run.batch_size=64
            train_run train_shipped_b256_eager 60 20 shipped --steps 30 run.batch_size=256
            if [ -d "$SPEECH/train" ] && selected 5; then  # step 5's steps/s at the recipe's batch
                train_run train_shipped_b16_eager 60 20 shipped --steps 100 run.batch_size=16
            fi
            train_run train_seed_b64_compile 150 60 seed --steps 30 --compile run.batch_size=64
            train_run train_shipped_b256_compile 150 60 shipped --steps 30 --compile run.batch_size=256
        else
            # The same runs' code paths on the CPU, batch 2 (bf16 autocast on the CPU), one of them profiled.
            train_run train_seed_b2_eager 180 30 seed --steps 1 --profile "$OUT/profile_seed.txt" \
                --profile-steps 1 run.batch_size=2 "${DRY_DATA[@]}"
            train_run train_shipped_b2_eager 120 30 shipped --steps 2 run.batch_size=2 "${DRY_DATA[@]}"
            train_run train_shipped_b2_compile 240 60 shipped --steps 1 --compile run.batch_size=2 \
                "${DRY_DATA[@]}"
            note "training on CUDA: skipped: no CUDA"
        fi
    else
        note "no shards: training was not measured"
    fi
    if [ "$CUDA" = 0 ] && [ "$STEP_FAILED" = 0 ]; then end_step "skipped: no CUDA (the CPU path ran)"; else end_step; fi
fi

# ------------------------------------------------------------------------------------------------------------
if selected 5; then
    begin 5 "about 3 minutes of the shipped recipe (configs/pretrained.yaml) on CUDA, scored by bench_accuracy"
    speech_ok=0
    compgen -G "$SPEECH/train/*.tar" > /dev/null && compgen -G "$SPEECH/eval/*.tar" > /dev/null && speech_ok=1
    left=$((DEADLINE - $(date +%s) - RESERVE))
    if [ "$DRY" != 1 ] && [ "$CUDA" = 0 ]; then
        end_step "skipped: no CUDA"
    elif [ "$DRY" != 1 ] && [ "$speech_ok" = 0 ]; then
        end_step "skipped: no speech shards at $SPEECH (train/ and eval/); examples/prepare_speech.sh fetches them from the network, which the GPU machine cannot reach, and they are too large to carry"
    elif [ "$DRY" != 1 ] && ((left < 260)); then
        end_step "skipped: time box (${left} s left, needs 260)"
    else
        PRE=$WORK/pretrained
        rooms=${GPU_CHECK_ROOMS:-1000}
        sim_extra=()
        speech_keys=("speech.train_path=$SPEECH/train" "speech.eval_path=$SPEECH/eval")
        train_keys=()
        steps=3000
        mixtures=200
        scored=1
        if [ "$DRY" = 1 ]; then
            rooms=16
            sim_extra=(--workers 1 shard_size=8)
            train_keys=(run.batch_size=4 eval.num_samples=8 eval.batch_size=8 "${DRY_DATA[@]}")
            steps=3
            mixtures=4
            # The dry run reads speech shards only where GPU_CHECK_SPEECH names a (small) set; else synthetic speech.
            if [ -z "${GPU_CHECK_SPEECH:-}" ] || [ "$speech_ok" = 0 ]; then
                speech_keys=(speech.source=synthetic)
                scored=0
            fi
        elif [ -f "$RES/train_shipped_b16_eager.json" ]; then
            # ~170 s at the measured batch-16 rate (the data path reads real speech there: an estimate)
            steps=$("$PY" -c "import json; r = json.load(open('$RES/train_shipped_b16_eager.json')); print(max(200, min(10000, int(170 * r['samples_per_s'] / 16))))")
        fi
        note "rooms per variant: $rooms; steps: $steps; speech: ${speech_keys[*]}"
        for variant in "fra:seed=0" "cal:decay=calibrated seed=1" "fra_u:uniform_directions=true seed=3" \
            "cal_u:decay=calibrated uniform_directions=true seed=2"; do
            dir=${variant%%:*}
            splits="train=$rooms"
            [ "$dir" = fra ] && splits="train=$rooms,eval=$([ "$DRY" = 1 ] && echo 8 || echo 400)"
            # shellcheck disable=SC2086  # the variant's overrides are words
            run "step5_sim_$dir" 90 10 "$PY" -m simulate --out "$PRE/$dir" --splits "$splits" --device "$DEV" \
                --no-progress "${sim_extra[@]}" ${variant#*:}
        done
        if [ "$STEP_FAILED" = 0 ]; then
            RUN5=$WORK/run5
            run step5_train 240 60 "$PY" training/train.py --config configs/pretrained.yaml --run-dir "$RUN5" \
                "data.shards=$PRE/fra" "data.train_glob=$PRE/{fra,cal,fra_u,cal_u}/train/train-*.tar" \
                "${speech_keys[@]}" "run.steps=$steps" "eval.every=$steps" "run.save_every=$(( (steps + 1) / 2 ))" \
                "run.log_every=$(( steps >= 100 ? steps / 20 : 1 ))" run.progress=false "${train_keys[@]}"
            [ -f "$RUN5/metrics.jsonl" ] && cp "$RUN5/metrics.jsonl" "$OUT/step5_metrics.jsonl"
            [ -f "$RUN5/model.safetensors" ] && cp "$RUN5/model.safetensors" "$OUT/step5_model.safetensors"
            if [ "$RC" = 0 ] && [ "$scored" = 0 ]; then
                note "scoring: skipped (bench_accuracy needs held-out speech shards; this dry run trained on synthetic speech)"
            elif [ "$RC" = 0 ]; then
                run step5_accuracy 180 30 "$PY" benchmarks/bench_accuracy.py --speech "$SPEECH/eval" \
                    --mixtures "$mixtures" \
                    --sets fra --cache "$WORK/accuracy_cache" --model ssl_model/pretrained/model.safetensors \
                    --run "$RUN5" --json "$OUT/step5_accuracy.json"
            fi
        fi
        if [ "$DRY" = 1 ] && [ "$STEP_FAILED" = 0 ]; then
            end_step "skipped: no CUDA (the CPU path ran: 3 steps on ${speech_keys[*]}, $([ "$scored" = 1 ] && echo "scored on $mixtures mixtures" || echo unscored))"
        else
            end_step
        fi
    fi
fi

say ""
summarize --print | tee -a "$LOG"
failed=$(awk -F'\t' '$2 ~ /^failed/' "$WORK/status.tsv" | wc -l)
exit $((failed > 0))
