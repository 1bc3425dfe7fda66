"""`python -m simulate verify --regenerate DIR`: render every listed RIR shard again from the config and seed its
split's manifest records, and compare it with the file on disk.

Plain verify checks a shard against the sha256 its manifest records, so a shard rewritten together with that
record passes it. A shard's content depends only on (config, seed, split, k), so rendering it again shows whether
the file is what that config makes: byte for byte for a CPU-written shard; for a CUDA-written one (its sidecar
says `device: cuda`) the json members byte for byte and the RIRs within CUDA's float rounding of the CPU's.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from configs import ConfigError, build_config
from shards.files import ShardError, iter_samples, read_sidecar, tar_bytes
from shards.layout import DATASET, shard_count, shard_name, shard_span
from shards.manifest import load_manifest
from simulate.config import GENERATOR_VERSION, SimulateConfig
from simulate.generate import config_hash, dataset_hash, in_workers, shaping_config, single_thread
from simulate.render import render_shard
from simulate.verify import find_manifests

# A CUDA render vs the CPU's (tests/test_simulate_gpu.py): each RIR within this share of its peak.
CUDA_TOLERANCE = 1e-3


@dataclass(frozen=True)
class RenderCheck:
    """One listed shard to render again and compare: its split's config, its place, and how exact to be."""
    cfg: SimulateConfig
    split: str
    k: int
    path: Path
    tolerance: float  # 0: byte for byte


def split_config(manifest: dict[str, Any], path: Path) -> SimulateConfig:
    """A split manifest -> the SimulateConfig it records; ShardError naming the manifest when that config cannot
    be the one its shards were written with (another generator, a config_hash that does not match, invalid)."""
    if manifest.get("kind", "rir") != "rir":
        raise ShardError(f"{path}: not an RIR split")
    if manifest.get("generator_version") != GENERATOR_VERSION:
        raise ShardError(f"{path}: written by generator {manifest.get('generator_version')!r}, this is "
                         f"{GENERATOR_VERSION!r}: its shards cannot be rendered again here")
    split = manifest.get("split")
    try:
        cfg = build_config(SimulateConfig, {**manifest["config"], "splits": {split: manifest["count"]}})
    except (ConfigError, KeyError, TypeError) as err:
        raise ShardError(f"{path}: its recorded config does not build ({err})") from None
    if config_hash(shaping_config(cfg), split) != manifest.get("config_hash"):
        raise ShardError(f"{path}: config_hash does not match the config it records (edited)")
    return cfg


def check_dataset_record(root: Path, cfg: SimulateConfig, path: Path) -> None:
    """The folder's dataset.json, where there is one, must record the same config as the split's manifest."""
    try:
        record = json.loads((root / DATASET).read_text())
    except (OSError, ValueError):
        return
    if isinstance(record, dict) and record.get("config_hash") != dataset_hash(shaping_config(cfg)):
        raise ShardError(f"{path}: records another config than {root / DATASET}")


def split_checks(manifest: dict[str, Any], path: Path) -> Iterator[RenderCheck]:
    """A verified-readable split manifest -> a RenderCheck per listed shard whose file exists (plain verify names
    the missing ones); ShardError when a record's span is not the one its config gives."""
    cfg = split_config(manifest, path)
    check_dataset_record(path.parent.parent, cfg, path)
    split, count = manifest["split"], manifest["count"]
    records = {r.get("name"): r for r in manifest.get("shards", []) if isinstance(r, dict)}
    for k in range(shard_count(count, cfg.shard_size)):
        name = shard_name(split, k)
        record, shard = records.get(name), path.parent / name
        if record is None or not shard.is_file():
            continue
        first, n = shard_span(count, cfg.shard_size, k)
        if (record.get("first_index"), record.get("count")) != (first, n):
            raise ShardError(f"{shard}: the manifest records samples {record.get('first_index')}+{record.get('count')}, "
                             f"its config gives {first}+{n}")
        device = (read_sidecar(shard) or record).get("device", "cpu")
        yield RenderCheck(cfg, split, k, shard, CUDA_TOLERANCE if device == "cuda" else 0.0)


def member_differs(ext: str, found: bytes, rendered: bytes, tolerance: float) -> bool:
    """One member on disk vs rendered again: bytes, or for .npy with a tolerance, values within it of the peak."""
    if found == rendered:
        return False
    if not tolerance or not ext.endswith("npy"):
        return True
    try:
        a = np.load(io.BytesIO(found), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return True
    b = np.load(io.BytesIO(rendered), allow_pickle=False)
    return a.shape != b.shape or not np.all(np.abs(a - b) <= tolerance * max(float(np.abs(b).max(initial=0.0)), 1e-30))


def first_difference(found: bytes, rendered: bytes, tolerance: float, where: str) -> str | None:
    """A shard's bytes vs its new render -> None when they agree, else what differs first (sample, member)."""
    if found == rendered:
        return None
    difference = difference_at(found, rendered, tolerance, where)
    if difference is None and not tolerance:
        return "the same samples in a tar of other bytes (headers or padding)"
    return difference


def difference_at(found: bytes, rendered: bytes, tolerance: float, where: str) -> str | None:
    """Sample by sample, member by member -> the first difference beyond `tolerance`, None when there is none."""
    try:
        ours = list(iter_samples(found, where))
    except ShardError as err:
        return str(err)
    theirs = list(iter_samples(rendered, "the new render"))
    if [key for key, _ in ours] != [key for key, _ in theirs]:
        return "its sample keys differ"
    for (key, parts), (_, new) in zip(ours, theirs):
        if sorted(parts) != sorted(new):
            return f"sample {key} has members {sorted(parts)}, the render {sorted(new)}"
        for ext in sorted(parts):
            if member_differs(ext, parts[ext], new[ext], tolerance):
                return f"sample {key} member {ext} differs"
    return None


def check_render(check: RenderCheck) -> str | None:
    """One shard on disk vs rendered again on the CPU -> None when they agree, else one line naming it."""
    cfg = check.cfg
    first, n = shard_span(cfg.splits[check.split], cfg.shard_size, check.k)
    with single_thread("cpu"):
        rendered = tar_bytes(render_shard(cfg, check.split, check.k, first, n, "cpu"))
    try:
        found = check.path.read_bytes()
    except OSError as err:
        return f"{check.path}: cannot read ({err.strerror or err})"
    difference = first_difference(found, rendered, check.tolerance, str(check.path))
    if difference is None:
        return None
    # A rerun trusts the manifest's sha256, which matches this file: only a removed shard is written again.
    return (f"{check.path}: differs from its render from the recorded config and seed ({difference}); remove it "
            f"and rerun the writer with that config and --shards {check.k}")


def run_checks(checks: list[RenderCheck], workers: int, progress: bool) -> list[str]:
    """Render and compare every check, `workers` spawned processes at a time -> problems, in shard order."""
    return [p for p in in_workers(check_render, checks, workers, "regenerate", progress) if p is not None]


def regenerate(root: Path, workers: int = 1, progress: bool = False) -> tuple[list[str], list[str]]:
    """Every RIR split under `root` -> (one-line problems, one-line summaries): each listed shard rendered again
    and compared; speech splits are named as not renderable (packed from audio files)."""
    problems, summaries, checks = [], [], []
    for path in find_manifests(Path(root)):
        try:
            manifest = load_manifest(path)
            if manifest.get("kind", "rir") != "rir":
                summaries.append(f"{path.parent}: {manifest.get('kind')} shards are packed from files, not rendered: "
                                 f"not re-rendered")
                continue
            split_jobs = list(split_checks(manifest, path))
        except (ShardError, ValueError) as err:
            problems.append(str(err))
            continue
        checks += split_jobs
        summaries.append(f"{path.parent}: {len(split_jobs)} shards rendered again from the recorded config and seed")
    problems += run_checks(checks, workers, progress)
    return problems, summaries
