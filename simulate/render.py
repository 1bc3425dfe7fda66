"""One shard's samples: seeded scene sampling -> batched FRA-RIR -> per-scene arrays and metadata."""
from __future__ import annotations

from typing import Any

import torch

from shards.array import ARRAY_KEY
from shards.layout import sample_key, shard_seed
from shards.samples import SOURCE_KEYS, json_bytes, npy_bytes
from simulate.config import GENERATOR_VERSION, SimulateConfig
from simulate.fra_rir import simulate_rirs
from simulate.scenes import sample_scenes


def render_batch(cfg: SimulateConfig, count: int, generator: torch.Generator,
                 device: str) -> dict[str, Any]:
    """count scenes, a CPU generator, the render device -> CPU dict: rir/early float32 [B,M,S,Lmax], lengths [B],
    scene and geometry tensors."""
    scenes = sample_scenes(cfg, count, generator, device=device)
    rir, early, lengths = simulate_rirs(scenes, cfg, generator)
    scenes = scenes.to("cpu")  # metadata from the CPU: the same json bytes whatever rendered the RIRs
    geometry = scenes.geometry(cfg.sound_speed)
    fields = {name: getattr(scenes, name) for name in
              ("room_dim", "rt60", "array_pos", "mic_pos", "mic_spacing", "src_pos", "image_count")}
    batch = {"rir": rir, "early": early, "lengths": lengths, **fields, **geometry}
    return {name: value.detach().cpu() for name, value in batch.items()}


def scene_meta(batch: dict[str, Any], b: int, cfg: SimulateConfig) -> dict[str, Any]:
    """Scene b of a rendered batch -> the sample's JSON metadata (the data contract in shards/README.md)."""
    sources = [{name: float(batch[name][b, s]) for name in SOURCE_KEYS}
               for s in range(batch["src_pos"].shape[1])]
    return {
        ARRAY_KEY: cfg.array_setup(float(batch["mic_spacing"][b])).validate().to_dict(),
        "sr": cfg.sr,
        "rt60": float(batch["rt60"][b]),
        "room_dim": batch["room_dim"][b].tolist(),
        "mic_pos": batch["mic_pos"][b].tolist(),
        "src_pos": batch["src_pos"][b].tolist(),
        "array_pos": batch["array_pos"][b].tolist(),
        "sources": sources,
        "image_count": int(batch["image_count"][b]),
        "length": int(batch["lengths"][b]),
        "decay": cfg.decay,
        "generator_version": GENERATOR_VERSION,
    }


def render_shard(cfg: SimulateConfig, split: str, k: int, first: int, count: int,
                 device: str = "cpu") -> list[tuple[str, bytes]]:
    """Shard k of `split` (samples first..first+count-1) -> tar members, in one batched render."""
    seed = shard_seed(cfg.seed, split, k)
    generator = torch.Generator().manual_seed(seed)  # on the CPU whatever the device: the same scenes anywhere
    batch = render_batch(cfg, count, generator, device)
    members = []
    for b in range(count):
        length = int(batch["lengths"][b])
        meta = {**scene_meta(batch, b, cfg), "seed": cfg.seed, "shard_seed": seed,
                "split": split, "shard": k, "index": first + b}
        key = sample_key(split, first + b)
        members += [(f"{key}.rir.npy", npy_bytes(batch["rir"][b, ..., :length].numpy())),
                    (f"{key}.early.npy", npy_bytes(batch["early"][b, ..., :length].numpy())),
                    (f"{key}.json", json_bytes(meta))]
    return members
