"""generate_dataset: plan the shards this rank owns, write the missing ones in parallel, merge manifests."""
from __future__ import annotations

import hashlib
import json
import multiprocessing
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from tqdm import tqdm

from configs import ConfigError, config_to_dict
from shards.array import ARRAY_KEY
from shards.files import atomic_write, remove_stale_temps, shard_is_current, tar_bytes, write_sidecar
from shards.layout import MANIFEST, shard_count, shard_name, shard_span
from shards.manifest import load_manifest, merge_manifest
from simulate.cluster import owns, resolve_device, resolve_rank
from simulate.config import GENERATOR_VERSION, SimulateConfig
from simulate.options import local_output_dir, resolve_config
from simulate.render import render_shard


def shaping_config(cfg: SimulateConfig) -> dict[str, Any]:
    """What shapes a split's shard content: the config without the split counts."""
    return {key: value for key, value in config_to_dict(cfg).items() if key != "splits"}


def split_array(cfg: SimulateConfig) -> dict[str, Any]:
    """The array record of a split's manifest: every scene's; with mic_spacing_range, mic_spacing is null and the
    range stands beside it (each sample's json holds its own spacing)."""
    if cfg.mic_spacing_range is None:
        return cfg.array_setup().validate().to_dict()
    lo, hi = cfg.mic_spacing_range
    return {**cfg.array_setup(lo).validate().to_dict(), "mic_spacing": None, "mic_spacing_range": [lo, hi]}


def config_hash(config: dict[str, Any], split: str) -> str:
    """Fingerprint of everything that shapes a split's shard content (the split counts excluded)."""
    shaping = {key: value for key, value in config.items() if key != "splits"}
    text = json.dumps({"config": shaping, "split": split, "generator": GENERATOR_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ShardJob:
    """One shard to ensure on disk: where, which samples, and the fields its sidecar must carry."""
    cfg: SimulateConfig
    split: str
    k: int
    first: int
    count: int
    path: Path
    config_hash: str
    device: str

    def sidecar_fields(self) -> dict[str, Any]:
        return {"split": self.split, "shard": self.k, "first_index": self.first, "count": self.count,
                "config_hash": self.config_hash, "seed": self.cfg.seed,
                "generator_version": GENERATOR_VERSION}


@contextmanager
def single_thread(device: str) -> Iterator[None]:
    """CPU renders run on one thread so the bytes cannot depend on the thread count."""
    if device != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ensure_shard(job: ShardJob) -> tuple[dict[str, Any], bool]:
    """Write shard `job` unless a verified copy exists -> (sidecar record, whether it was written)."""
    expected = job.sidecar_fields()
    record = shard_is_current(job.path, expected)
    if record is not None:
        return record, False
    with single_thread(job.device):
        members = render_shard(job.cfg, job.split, job.k, job.first, job.count, job.device)
    atomic_write(job.path, tar_bytes(members))
    return write_sidecar(job.path, {**expected, "device": torch.device(job.device).type}), True


def _worker_init() -> None:
    torch.set_num_threads(1)


def plan_split(cfg: SimulateConfig, out: Path, split: str, count: int, device: str,
               shards: set[int] | None, rank: int, world_size: int) -> tuple[dict[str, Any], list[ShardJob]]:
    """One split -> (manifest header, the jobs this rank owns); refuses a folder of another config."""
    directory = out / split
    digest = config_hash(shaping_config(cfg), split)
    existing = directory / MANIFEST
    if existing.is_file():
        try:
            old = load_manifest(existing).get("config_hash")
        except ValueError:
            old = None  # a damaged manifest is rewritten from the sidecars
        if old is not None and old != digest:
            raise ConfigError(f"{directory} holds shards of a different config (config_hash {old[:12]}...); "
                              f"use another --out or remove that folder")
    header = {"kind": "rir", "split": split, "seed": cfg.seed, "generator_version": GENERATOR_VERSION,
              ARRAY_KEY: split_array(cfg),
              "config_hash": digest, "shard_size": cfg.shard_size,
              # Without `splits`, so a split's manifest does not depend on which other splits a run wrote.
              "config": shaping_config(cfg)}
    jobs = []
    for k in range(shard_count(count, cfg.shard_size)):
        if owns(k, rank, world_size) and (shards is None or k in shards):
            first, n = shard_span(count, cfg.shard_size, k)
            jobs.append(ShardJob(cfg, split, k, first, n, directory / shard_name(split, k), digest, device))
    return header, jobs


def run_jobs(jobs: list[ShardJob], workers: int, progress: bool) -> int:
    """Write every job's shard, `workers` spawned processes at a time -> number written."""
    bar = tqdm(total=len(jobs), unit="shard", desc="simulate", disable=not progress or not jobs)
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        results: Iterable[tuple[dict[str, Any], bool]] = map(ensure_shard, jobs)
        pool = None
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_worker_init)
        results = pool.imap_unordered(ensure_shard, jobs)
    written = 0
    try:
        for _, wrote in results:
            written += wrote
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    return written


def generate_dataset(out_dir, cfg: SimulateConfig | None = None, splits: dict[str, int] | None = None, *,
                     overrides: Iterable[str] = (), workers: int = 1, device: str = "cpu",
                     shards: Iterable[int] | None = None, rank: int | None = 0, world_size: int | None = 1,
                     progress: bool = False) -> dict[str, Path]:
    """Write this rank's missing shards of every split and merge the manifests -> {split: manifest path}.

    rank/world_size None: taken from SLURM or torchrun variables (see simulate.cluster).
    """
    cfg = resolve_config(cfg, splits, overrides)
    rank, world_size = resolve_rank(rank, world_size)
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ConfigError(f"device: expected cpu or cuda, got {device!r}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but torch finds no CUDA device")
    device = resolve_device(device, torch.cuda.device_count())
    wanted = None if shards is None else {int(k) for k in shards}
    out = local_output_dir(out_dir)
    largest = max((shard_count(n, cfg.shard_size) for n in cfg.splits.values()), default=0)
    if wanted and max(wanted) >= largest:
        raise ConfigError(f"--shards: shard {max(wanted)} does not exist; the largest split has {largest} shards")
    plans = {split: plan_split(cfg, out, split, count, device, wanted, rank, world_size)
             for split, count in cfg.splits.items()}
    jobs = [job for _, split_jobs in plans.values() for job in split_jobs]
    for split in plans:
        (out / split).mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out / split)  # what killed writers left; a live writer's files are kept
    # Verified shards are skipped here, so a finished set costs one hash pass and no worker start-up.
    missing = [job for job in jobs if shard_is_current(job.path, job.sidecar_fields()) is None]
    if progress:
        print(f"simulate: {len(missing)} shards to write, {len(jobs) - len(missing)} already verified "
              f"(rank {rank} of {world_size})", flush=True)
    run_jobs(missing, workers, progress)
    manifests = {}
    for split, (header, _) in plans.items():
        names = [shard_name(split, k) for k in range(shard_count(cfg.splits[split], cfg.shard_size))]
        merge_manifest(out / split, header, names, cfg.splits[split])
        manifests[split] = out / split / MANIFEST
    return manifests
