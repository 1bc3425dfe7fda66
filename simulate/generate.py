"""generate_dataset: plan the shards this rank owns, write the missing ones in parallel, merge manifests."""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from tqdm import tqdm

from configs import ConfigError, config_to_dict
from shards.array import ARRAY_KEY
from shards.files import atomic_write, remove_stale_temps, sha256_bytes, shard_is_current, tar_bytes, write_sidecar
from shards.layout import DATASET, MANIFEST, shard_count, shard_name, shard_span
from shards.manifest import load_manifest, merge_manifest, split_lock
from simulate.cluster import owns, resolve_device, resolve_rank
from simulate.config import GENERATOR_VERSION, SimulateConfig
from simulate.options import local_output_dir, resolve_config
from simulate.render import render_shard

log = logging.getLogger(__name__)


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
    recorded_sha256: str | None = None  # the split manifest's record of this shard, when it lists one

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


def listed_as_current(job: ShardJob) -> dict[str, Any] | None:
    """The shard's sidecar record when the shard matches it AND the manifest's record of it (the cheap check)."""
    record = shard_is_current(job.path, job.sidecar_fields())
    return record if record is not None and record["sha256"] == job.recorded_sha256 else None


def ensure_shard(job: ShardJob) -> tuple[dict[str, Any], bool]:
    """Write shard `job` unless a verified copy exists -> (sidecar record, whether it was written).

    A sidecar alone never vouches for a shard (it can be rewritten to match damage): a shard the manifest does
    not list yet (a killed run's) is rendered again and kept only when its bytes are the ones it would get.
    """
    record = listed_as_current(job)
    if record is not None:
        return record, False
    record = shard_is_current(job.path, job.sidecar_fields())
    with single_thread(job.device):
        data = tar_bytes(render_shard(job.cfg, job.split, job.k, job.first, job.count, job.device))
    if record is not None and sha256_bytes(data) == record["sha256"]:
        return record, False
    atomic_write(job.path, data)
    return write_sidecar(job.path, {**job.sidecar_fields(), "device": torch.device(job.device).type}), True


def _worker_init() -> None:
    torch.set_num_threads(1)


def manifest_records(path: Path, digest: str) -> dict[str, dict[str, Any]]:
    """A split's manifest.json -> {shard name: its record} when it holds this config's shards, else {}."""
    try:
        manifest = load_manifest(path) if path.is_file() else {}
    except ValueError:
        return {}  # a damaged manifest is rewritten; its shards are checked by rendering them again
    if manifest.get("config_hash") != digest:
        return {}
    return {r["name"]: r for r in manifest.get("shards", []) if isinstance(r, dict) and "name" in r}


def written_records(out: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every RIR split manifest and shard sidecar under `out/*/` -> (path, record); unreadable ones left out."""
    for path in sorted(out.glob("*/*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("split"), str) and "config_hash" in record:
            yield path, record


def check_folder(out: Path, cfg: SimulateConfig) -> None:
    """A folder holds one config: ConfigError naming the first manifest, sidecar or dataset.json written with
    another (another seed, another option), also where a killed run left only sidecars."""
    shaping = shaping_config(cfg)
    dataset = read_dataset(out)
    if dataset is not None and dataset.get("config_hash") != dataset_hash(shaping):
        raise ConfigError(f"{out / DATASET}: {out} holds shards of a different config (seed {dataset.get('seed')} "
                          f"there, {cfg.seed} now); a folder holds one config: use another --out or remove that folder")
    for path, record in written_records(out):
        if record["config_hash"] != config_hash(shaping, record["split"]):
            raise ConfigError(f"{path}: {path.parent} holds shards of a different config (seed {record.get('seed')} "
                              f"there, {cfg.seed} now; config_hash {str(record['config_hash'])[:12]}...); a folder "
                              f"holds one config: use another --out or remove that folder")


def dataset_hash(shaping: dict[str, Any]) -> str:
    """Fingerprint of the folder's config (every split's shards are shaped by it)."""
    return config_hash(shaping, "*")


def read_dataset(out: Path) -> dict[str, Any] | None:
    """{out}/dataset.json -> its record, None when absent; a damaged one is rewritten."""
    try:
        record = json.loads((out / DATASET).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def record_dataset(out: Path, cfg: SimulateConfig) -> None:
    """Add this run's splits to {out}/dataset.json (under the folder's lock; checked against its config first)."""
    with split_lock(out):
        check_folder(out, cfg)
        old = read_dataset(out) or {}
        splits = {**(old.get("splits") if isinstance(old.get("splits"), dict) else {}), **cfg.splits}
        record = {"kind": "rir", "config_hash": dataset_hash(shaping_config(cfg)), "seed": cfg.seed,
                  "generator_version": GENERATOR_VERSION, "splits": dict(sorted(splits.items()))}
        if record != old:
            atomic_write(out / DATASET, json.dumps(record, sort_keys=True, indent=1).encode() + b"\n")


def recorded_sizes(out: Path, split: str, shard_size: int) -> Iterator[tuple[int, int, str]]:
    """What a folder already records of a split -> (scenes, shards, what and where) for dataset.json's count, the
    manifest's, and each shard file or sidecar on disk (shard k: k + 1 shards)."""
    dataset = read_dataset(out) or {}
    count = (dataset.get("splits") if isinstance(dataset.get("splits"), dict) else {}).get(split)
    if isinstance(count, int):
        yield count, shard_count(count, shard_size), f"{out / DATASET} records {count} scenes"
    try:
        manifest = load_manifest(out / split / MANIFEST) if (out / split / MANIFEST).is_file() else {}
    except ValueError:
        manifest = {}
    if isinstance(manifest.get("count"), int):
        count = manifest["count"]
        yield count, shard_count(count, shard_size), f"{out / split / MANIFEST} records {count} scenes"
    for path in sorted((out / split).glob(f"{split}-*.*")):
        number = path.stem.rpartition("-")[2]
        if path.suffix in (".tar", ".json") and number.isdigit():
            yield 0, int(number) + 1, f"{path} is on disk"


def check_no_shrink(out: Path, cfg: SimulateConfig) -> None:
    """ConfigError naming the record when a split would get fewer scenes or shards than the folder holds: its
    other shards would stay on disk unlisted, and verify would fail."""
    for split, count in cfg.splits.items():
        for scenes, shards, held in recorded_sizes(out, split, cfg.shard_size):
            if scenes > count or shards > shard_count(count, cfg.shard_size):
                raise ConfigError(f"splits.{split}={count}: {held}; a split cannot shrink (its other shards would "
                                  f"stay unlisted and fail verify): ask for as many scenes or more, or write {count} "
                                  f"to another --out")


def plan_split(cfg: SimulateConfig, out: Path, split: str, count: int, device: str,
               shards: set[int] | None, rank: int, world_size: int) -> tuple[dict[str, Any], list[ShardJob]]:
    """One split -> (manifest header, the jobs this rank owns); refuses a folder of another config."""
    directory = out / split
    digest = config_hash(shaping_config(cfg), split)
    recorded = manifest_records(directory / MANIFEST, digest)
    header = {"kind": "rir", "split": split, "seed": cfg.seed, "generator_version": GENERATOR_VERSION,
              ARRAY_KEY: split_array(cfg),
              "config_hash": digest, "shard_size": cfg.shard_size,
              # Without `splits`, so a split's manifest does not depend on which other splits a run wrote.
              "config": shaping_config(cfg)}
    jobs = []
    for k in range(shard_count(count, cfg.shard_size)):
        if owns(k, rank, world_size) and (shards is None or k in shards):
            first, n = shard_span(count, cfg.shard_size, k)
            name = shard_name(split, k)
            jobs.append(ShardJob(cfg, split, k, first, n, directory / name, digest, device,
                                 recorded.get(name, {}).get("sha256")))
    return header, jobs


def in_workers(fn, items: list, workers: int, desc: str, progress: bool, ordered: bool = True) -> Iterator:
    """fn over items, `workers` spawned processes at a time (in this process when one), with a progress bar ->
    the results (in items' order when `ordered`); the pool is torn down however the caller stops reading."""
    bar = tqdm(total=len(items), unit="shard", desc=desc, disable=not progress or not items)
    workers = max(1, min(workers, len(items)))
    pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_worker_init) if workers > 1 else None
    results = map(fn, items) if pool is None else (pool.imap if ordered else pool.imap_unordered)(fn, items)
    try:
        for result in results:
            bar.update(1)
            yield result
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()


def run_jobs(jobs: list[ShardJob], workers: int, progress: bool) -> int:
    """Write every job's shard, `workers` spawned processes at a time -> number written."""
    return sum(wrote for _, wrote in in_workers(ensure_shard, jobs, workers, "simulate", progress, ordered=False))


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
    check_folder(out, cfg)  # before anything is created
    check_no_shrink(out, cfg)
    plans = {split: plan_split(cfg, out, split, count, device, wanted, rank, world_size)
             for split, count in cfg.splits.items()}
    jobs = [job for _, split_jobs in plans.values() for job in split_jobs]
    out.mkdir(parents=True, exist_ok=True)
    record_dataset(out, cfg)
    for split in plans:
        (out / split).mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out / split)  # what killed writers left; a live writer's files are kept
    # Shards the manifest vouches for are skipped here, so a finished set costs one hash pass and no worker
    # start-up; the rest go to the workers, which render each and keep it only if its bytes are right.
    missing = [job for job in jobs if listed_as_current(job) is None]
    log.info("simulate: %d shards to write, %d already verified (rank %d of %d)", len(missing),
             len(jobs) - len(missing), rank, world_size)
    run_jobs(missing, workers, progress)
    manifests = {}
    for split, (header, _) in plans.items():
        names = [shard_name(split, k) for k in range(shard_count(cfg.splits[split], cfg.shard_size))]
        merge_manifest(out / split, header, names, cfg.splits[split])
        manifests[split] = out / split / MANIFEST
    return manifests
