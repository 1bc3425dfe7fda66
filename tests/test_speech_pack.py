"""Speech packing: LibriSpeech layout, mono FLAC at one rate from any input, deterministic shards, verify, bad and
silent files counted."""
import io
import json
import subprocess
import sys

import numpy as np
import soundfile

from shards.audio import find_audio, speaker_of
from shards.files import read_samples
from simulate.speech import pack_speech
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


def test_pack_writes_mono_flac_at_the_rate_and_is_reproducible(tmp_path):
    files = make_corpus(tmp_path / "audio")
    manifest_path = pack_speech(tmp_path / "audio", tmp_path / "a", shard_size=3)
    pack_speech(tmp_path / "audio", tmp_path / "b", shard_size=3)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["kind"] == "speech" and manifest["count"] == 4 and manifest["complete"] and manifest["sr"] == 16000
    assert [s["name"] for s in manifest["shards"]] == ["speech-000000.tar", "speech-000001.tar"]
    for name in ("speech-000000.tar", "speech-000001.tar"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    samples = [s for name in ("speech-000000.tar", "speech-000001.tar") for s in read_samples(tmp_path / "a" / name)]
    assert [key for key, _ in samples] == [f"speech-{i:09d}" for i in range(4)]
    for key, parts in samples:
        meta = json.loads(parts["json"])
        audio, sr = soundfile.read(io.BytesIO(parts["flac"]))
        original, _ = soundfile.read(tmp_path / "audio" / meta["path"])
        # 16 kHz mono noise: nothing to resample or trim; 24-bit FLAC keeps it to 2^-23.
        assert sr == 16000 and audio.ndim == 1 and np.abs(audio - original).max() < 2e-7
        assert abs(meta["duration"] - files[meta["path"]] / 16000) < 1e-9 and meta["source_sr"] == 16000
    assert json.loads(samples[0][1]["json"])["speaker"] == "19"
    assert verify(tmp_path / "a") == ([], [f"{tmp_path / 'a'}: 2 shards, 4 samples ok"])


def test_any_rate_and_channel_count_is_resampled_downmixed_and_trimmed(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    t48 = np.arange(48000) / 48000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t48)
    # 48 kHz stereo, the same tone in both channels, with 0.5 s of silence before it.
    soundfile.write(root / "a-48k.wav", np.stack([np.r_[np.zeros(24000), tone]] * 2, axis=1), 48000)
    t22 = np.arange(22050) / 22050
    soundfile.write(root / "b-22k.ogg", 0.5 * np.sin(2 * np.pi * 440 * t22), 22050, format="OGG", subtype="VORBIS")
    soundfile.write(root / "c-silent.flac", np.zeros(16000), 16000)
    manifest = json.loads(pack_speech(root, tmp_path / "out", shard_size=8).read_text())
    assert manifest["count"] == 2 and [s["path"] for s in manifest["skipped"]] == ["c-silent.flac"]
    samples = list(read_samples(tmp_path / "out" / "speech-000000.tar"))
    for key, parts in samples:
        audio, sr = soundfile.read(io.BytesIO(parts["flac"]))
        meta = json.loads(parts["json"])
        assert sr == 16000 and audio.ndim == 1 and meta["channels"] == 1
        assert abs(len(audio) / 16000 - 1.0) < 0.03  # the leading silence is trimmed away (20 ms frames)
        spectrum = np.abs(np.fft.rfft(audio))
        assert abs(np.argmax(spectrum) * 16000 / len(audio) - 440) < 3  # still a 440 Hz tone after resampling
    assert [json.loads(p["json"])["source_sr"] for _, p in samples] == [48000, 22050]
    assert json.loads(samples[0][1]["json"])["source_channels"] == 2


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
