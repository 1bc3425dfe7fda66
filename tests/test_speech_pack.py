"""Speech packing: LibriSpeech layout, bytes as they are, deterministic shards, verify, bad files counted."""
import io
import json
import subprocess
import sys

import numpy as np
import soundfile

from simulate.shards import read_samples
from simulate.speech import find_audio, pack_speech, speaker_of
from simulate.verify import verify


def make_corpus(root):
    rng = np.random.default_rng(0)
    files = {"19/198/19-198-0001.flac": 16000, "19/198/19-198-0002.flac": 8000,
             "26/495/26-495-0000.flac": 12000, "84-121-0003.wav": 4000}
    for name, frames in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, rng.uniform(-0.5, 0.5, frames), 16000)
    return files


def test_find_audio_sorted_and_speakers(tmp_path):
    make_corpus(tmp_path)
    (tmp_path / "notes.txt").write_text("not audio")
    paths = find_audio(tmp_path)
    assert [p.as_posix() for p in paths] == sorted(p.as_posix() for p in paths)
    assert [speaker_of(p) for p in paths] == ["19", "19", "26", "84"]


def test_pack_keeps_bytes_and_headers_and_is_reproducible(tmp_path):
    files = make_corpus(tmp_path / "audio")
    manifest_path = pack_speech(tmp_path / "audio", tmp_path / "a", shard_size=3)
    pack_speech(tmp_path / "audio", tmp_path / "b", shard_size=3)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["kind"] == "speech" and manifest["count"] == 4 and manifest["complete"]
    assert [s["name"] for s in manifest["shards"]] == ["speech-000000.tar", "speech-000001.tar"]
    for name in ("speech-000000.tar", "speech-000001.tar"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    samples = [s for name in ("speech-000000.tar", "speech-000001.tar") for s in read_samples(tmp_path / "a" / name)]
    assert [key for key, _ in samples] == [f"speech-{i:09d}" for i in range(4)]
    key, parts = samples[0]
    meta = json.loads(parts["json"])
    assert parts["flac"] == (tmp_path / "audio" / meta["path"]).read_bytes()
    assert meta["speaker"] == "19" and meta["sr"] == 16000
    assert abs(meta["duration"] - files[meta["path"]] / 16000) < 1e-9
    assert "wav" in samples[3][1]
    audio, sr = soundfile.read(io.BytesIO(samples[3][1]["wav"]))
    assert sr == 16000 and len(audio) == 4000
    assert verify(tmp_path / "a") == ([], [f"{tmp_path / 'a'}: 2 shards, 4 samples ok"])


def test_unreadable_file_is_skipped_and_counted(tmp_path):
    make_corpus(tmp_path / "audio")
    (tmp_path / "audio" / "99-1-0000.flac").write_bytes(b"not a flac file")
    manifest = json.loads(pack_speech(tmp_path / "audio", tmp_path / "out").read_text())
    assert manifest["count"] == 4
    assert [s["path"] for s in manifest["skipped"]] == ["99-1-0000.flac"]


def test_cli_speech_and_missing_dir(tmp_path):
    make_corpus(tmp_path / "audio")
    run = [sys.executable, "-m", "simulate", "speech", "--no-progress"]
    ok = subprocess.run(run + ["--audio-dir", str(tmp_path / "audio"), "--out", str(tmp_path / "out")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "4 files" in ok.stdout
    bad = subprocess.run(run + ["--audio-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: --audio-dir") and len(bad.stderr.strip().splitlines()) == 1
