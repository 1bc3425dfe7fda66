"""Make the sample recording shipped in examples/sample/: two real talkers in one simulated room, heard by two mics.

    .venv/bin/python examples/make_sample.py [--speech shards/speech/eval] [--out examples/sample]

What it writes (and what examples/sample/README.md states):
- two_talkers.wav: 3.5 s, 16 kHz, 16-bit PCM, stereo (channel 0 = mic 0, channel 1 = mic 1);
- two_talkers.json: the scene (room, RT60, positions, the true lateral angles) and where the speech comes from.

The scene: a 6.0 x 5.0 x 3.0 m shoebox room, RT60 0.3 s (`decay: calibrated`, so the RIR's own decay matches
it), two mics 10 cm apart along the room's x axis, centred at (3.0, 2.0, 1.2) m. Two talkers 1.5 m from the
array centre, at its height, at lateral angles 50 and 125 degrees. The lateral angle is the angle between the
direction to the talker and the axis from mic 0 to mic 1 (0 = towards mic 1, 90 = broadside, 180 = towards mic
0; docs/protocol.md, shards/README.md). The room impulse responses come from this project's own simulator
(simulate.fra_rir.simulate_rirs, the renderer of `python -m simulate`), with a fixed seed.

The speech: two utterances of two different characters (the big fish, `-v-`, and the small fish, `-m-`, voiced
by different actors) from the Dutch voice acting of the game Fish Fillets NG, Debian package `fillets-ng-data-nl`,
packed by `bash examples/prepare_speech.sh` into shards/speech/eval (mono, 16 kHz, silence trimmed). That audio
is under the GNU General Public License, version 2 (Debian's copyright file for the package), and so is the
sample made from it: see examples/sample/README.md. No model in this project trained on these voices (the Dutch
speech is evaluation-only).

Deterministic: a fixed scene, fixed utterances and a fixed seed; rerunning it writes the same samples (up to one
least significant bit where float rounding differs between machines; tests/test_docs_commands.py checks that
when shards/speech/eval is present).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere, as a script

from shards.files import read_samples  # noqa: E402  (after the path set-up)
from shards.samples import speech_member  # noqa: E402
from shards.scenes import Scenes  # noqa: E402
from simulate.config import SimulateConfig  # noqa: E402
from simulate.fra_rir import simulate_rirs  # noqa: E402
from training.data.mixing import convolve_sources  # noqa: E402

SR = 16000
SECONDS = 3.5
SEED = 20261206
ROOM = (6.0, 5.0, 3.0)  # metres
RT60 = 0.3  # seconds
ARRAY = (3.0, 2.0, 1.2)  # the array centre (metres); mics at -5 cm and +5 cm along x
SPACING = 0.10
DISTANCE = 1.5  # metres from the array centre to each talker
ANGLES = (50.0, 125.0)  # lateral angles in degrees, talker 1 and talker 2
# talker 1 (50 degrees): the big fish; talker 2 (125 degrees): the small fish (fillets-ng-data-nl file names)
UTTERANCES = ("atlantis/nl/sp-v-zahynuli.ogg", "atlantis/nl/sp-m-kalet.ogg")
PEAK = 0.5  # the mixture's peak, full scale = 1 (-6 dBFS)


def read_utterances(speech: Path, paths: tuple[str, ...]) -> list[np.ndarray]:
    """speech shard folder, utterance paths (their `path` field) -> their audio [T] at 16 kHz, in that order."""
    found: dict[str, np.ndarray] = {}
    for tar in sorted(speech.glob("speech-*.tar")):
        for key, parts in read_samples(tar):
            ext, meta = speech_member(key, parts, str(tar))
            if meta.get("path") in paths:
                audio, sr = sf.read(io.BytesIO(parts[ext]), dtype="float64")
                if sr != SR:
                    raise SystemExit(f"{tar}: {key} is at {sr} Hz, expected {SR}")
                found[meta["path"]] = audio
    missing = [p for p in paths if p not in found]
    if missing:
        raise SystemExit(f"{speech}: no speech shard holds {', '.join(missing)}; "
                         "run `bash examples/prepare_speech.sh` to build shards/speech/eval")
    return [found[p] for p in paths]


def scene() -> tuple[Scenes, SimulateConfig]:
    """The sample's room as one scene of the simulator, and the simulator's config for it."""
    cfg = SimulateConfig(sr=SR, decay="calibrated", rt60_range=(RT60, RT60), room_min=ROOM, room_max=ROOM)
    array = torch.tensor(ARRAY, dtype=torch.float64)
    mics = array + torch.tensor([[-SPACING / 2, 0, 0], [SPACING / 2, 0, 0]], dtype=torch.float64)
    rad = torch.deg2rad(torch.tensor(ANGLES, dtype=torch.float64))
    sources = array + DISTANCE * torch.stack([torch.cos(rad), torch.sin(rad), torch.zeros_like(rad)], dim=-1)
    generator = torch.Generator().manual_seed(SEED)
    lo, hi = cfg.image_count_range
    image_count = torch.randint(lo, hi + 1, (1,), generator=generator)  # as the simulator draws it per scene
    scenes = Scenes(room_dim=torch.tensor([ROOM], dtype=torch.float64), rt60=torch.tensor([RT60], dtype=torch.float64),
                    array_pos=array[None], mic_pos=mics[None], mic_spacing=torch.tensor([SPACING], dtype=torch.float64),
                    src_pos=sources[None], image_count=image_count)
    return scenes, cfg


def make(speech: Path, out: Path) -> dict:
    """Render the sample into `out` (two_talkers.wav, two_talkers.json) -> the scene's record."""
    scenes, cfg = scene()
    rir, _, lengths = simulate_rirs(scenes, cfg, torch.Generator().manual_seed(SEED + 1))  # [1, 2 mics, 2 src, L]
    n = int(SECONDS * SR)
    voices = read_utterances(speech, UTTERANCES)
    short = [p for p, v in zip(UTTERANCES, voices) if len(v) < n]
    if short:
        raise SystemExit(f"{', '.join(short)}: shorter than {SECONDS} s")
    dry = torch.tensor(np.stack([v[:n] for v in voices]), dtype=torch.float32)[None]  # [1, 2 talkers, n]
    images = convolve_sources(dry, rir, out_len=n)[0].double()  # [2 mics, 2 talkers, n]
    # Each talker as loud as the other at the mics (equal power over both mics), then the sum at -6 dBFS peak.
    power = images.pow(2).mean(dim=(0, 2))
    images = images / power.sqrt()[None, :, None]
    wave = images.sum(dim=1)
    wave = (wave / wave.abs().max() * PEAK).numpy()
    out.mkdir(parents=True, exist_ok=True)
    sf.write(out / "two_talkers.wav", wave.T, SR, subtype="PCM_16")
    geometry = {k: v[0].tolist() for k, v in scenes.geometry(cfg.sound_speed).items()}
    record = {
        "file": "two_talkers.wav",
        "sample_rate": SR, "seconds": SECONDS, "channels": "0 = mic 0, 1 = mic 1", "subtype": "PCM_16",
        "lateral_deg": [round(a, 3) for a in geometry["lateral_deg"]],
        "talkers": [{"lateral_deg": round(geometry["lateral_deg"][i], 3),
                     "distance_m": round(geometry["distance_m"][i], 3),
                     "elevation_deg": round(geometry["elevation_deg"][i], 3),
                     "tdoa_s": geometry["tdoa_s"][i],
                     "position_m": [round(x, 4) for x in scenes.src_pos[0, i].tolist()],
                     "speech": f"fillets-ng-data-nl: {UTTERANCES[i]} (first {SECONDS} s, silence-trimmed)"}
                    for i in range(len(ANGLES))],
        "room_m": list(ROOM), "rt60_s": RT60, "decay": cfg.decay, "rir_samples": int(lengths[0]),
        "array_centre_m": list(ARRAY), "mic_spacing_m": SPACING,
        "mic_positions_m": [[round(x, 4) for x in m] for m in scenes.mic_pos[0].tolist()],
        "sound_speed_m_s": cfg.sound_speed, "image_count": int(scenes.image_count[0]), "seed": SEED,
        "made_by": "examples/make_sample.py",
        "licence": "GPL-2.0 (the speech: Fish Fillets NG's Dutch voice acting, Debian package fillets-ng-data-nl)",
    }
    (out / "two_talkers.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speech", type=Path, default=ROOT / "shards" / "speech" / "eval",
                   help="the Dutch evaluation speech shards (bash examples/prepare_speech.sh)")
    p.add_argument("--out", type=Path, default=ROOT / "examples" / "sample")
    args = p.parse_args(argv)
    record = make(args.speech, args.out)
    angles = ", ".join(f"{a:.1f}" for a in record["lateral_deg"])
    print(f"wrote {args.out / record['file']}: two talkers at lateral {angles} degrees, room {ROOM} m, "
          f"RT60 {RT60} s, mics {SPACING * 100:.0f} cm apart")
    return 0


if __name__ == "__main__":
    sys.exit(main())
