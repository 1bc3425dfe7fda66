#!/usr/bin/env bash
# Real speech as speech shards, from Debian's packages (GPL-2+, the Fish Fillets NG voice acting):
#   fillets-ng-data-cs: ~100 min of Czech, training voices   -> shards/speech/train
#   fillets-ng-data-nl: ~90 min of Dutch, other actors, only for evaluation -> shards/speech/eval
# Installs the packages with apt-get when they are missing (root, or sudo). Every file is downmixed to mono,
# resampled to 16 kHz and trimmed of leading and trailing silence (python -m simulate speech).
#
#   bash examples/prepare_speech.sh [OUT]        # OUT defaults to shards/speech
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-shards/speech}
PYTHON=${PYTHON:-.venv/bin/python}
SOUND=/usr/share/games/fillets-ng/sound

missing=()
for lang in cs nl; do
  dpkg -s "fillets-ng-data-$lang" >/dev/null 2>&1 || missing+=("fillets-ng-data-$lang")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  echo "installing ${missing[*]} (apt-get)"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

"$PYTHON" -m simulate speech --audio-dir "$SOUND" --include '*/cs/*.ogg' --out "$OUT/train"
"$PYTHON" -m simulate speech --audio-dir "$SOUND" --include '*/nl/*.ogg' --out "$OUT/eval"
"$PYTHON" -m simulate verify "$OUT"
