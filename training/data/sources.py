"""Where a run's data comes from, checked before any model is built: shard lists, speech sources, the
array setup each split was simulated with, and that the eval set shares nothing with the training stream.

A run resolves its lists once (`check_sources` -> a SplitSources per side) and passes them down to the training
data (training.data.batches) and the eval set (training.data.eval_set).

Shard lists accept local folders and globs, and any WebDataset URL with brace expansion: `pipe:CMD`
(the shard is CMD's stdout), `http(s)://`, `gs://`, ... A URL root in `data.shards` is listed from its
split's manifest.json; a URL glob is expanded from its braces (URLs cannot be globbed).
"""
from __future__ import annotations

import glob
import hashlib
import os
import re
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds

from shards.audio import find_audio
from shards.files import ShardError, iter_samples, read_url, sha256_file, sidecar_sha256
from shards.limits import MAX_JSON_BYTES, load_json, read_regular_file, regular_file_size
from shards.layout import MANIFEST, SPEECH, is_url, shard_glob, split_glob
from shards.manifest import load_manifest
from shards.array import ArraySetup
from shards.samples import decode_rir
from training.config import TrainConfig


class DataError(RuntimeError):
    """Shards missing, empty, of another setup or too damaged to train on; the message names the path and key."""


# A shard's file name as a manifest may list it: a plain name, so a URL built from it stays under its root.
SHARD_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.tar$")


@dataclass(frozen=True)
class SplitSources:
    """One side of a run's data (train or eval), resolved: its RIR shards (paths or URLs) and its speech (speech
    shards or audio files; empty with synthetic speech)."""
    scenes: list[str]
    speech: list[str]


def expand(pattern: str) -> list[str]:
    """A glob or URL pattern with braces -> its shards: local paths globbed and sorted, URLs as expanded."""
    parts = wds.shardlists.expand_urls(pattern)
    if is_url(pattern):
        return list(parts)
    return sorted({p for part in parts for p in glob.glob(part)})


def split_key(cfg: TrainConfig, split: str) -> str:
    return "data.train_glob" if split == cfg.data.train_split else "data.eval_glob"


def resolve_shards(cfg: TrainConfig, split: str) -> list[str]:
    """-> the shard paths or URLs of `split` (data.train_glob / data.eval_glob, else data.shards); DataError when none."""
    pattern = {cfg.data.train_split: cfg.data.train_glob, cfg.data.eval_split: cfg.data.eval_glob}.get(split, "")
    root = cfg.data.shards
    if pattern:
        where, key, urls = pattern, split_key(cfg, split), expand(pattern)
    elif root.startswith("pipe:"):
        raise DataError(f"data.shards={root}: a pipe: command is not a shard root (its split manifests would be new "
                        f"commands); give each split's command as data.train_glob / data.eval_glob")
    elif is_url(root):
        where, key = f"{root.rstrip('/')}/{split}/{MANIFEST}", "data.shards"
        urls = [f"{root.rstrip('/')}/{split}/{name}" for name in manifest_shard_names(where, root)]
    else:
        where, key, urls = split_glob(root, split), "data.shards", sorted(glob.glob(split_glob(root, split)))
        warn_if_incomplete(Path(root) / split / MANIFEST)
    check_local_files(urls, key)
    if not urls:
        manifest = Path(root) / split / MANIFEST
        hint = " (its manifest.json lists no shards: an empty split)" if not pattern and manifest.is_file() else ""
        raise DataError(f"no {split} shards match {where} ({key}={pattern or root}){hint}; write them with "
                        f"`python -m simulate --out {root}`")
    return urls


def manifest_shard_names(where: str, root: str) -> list[str]:
    """A split manifest's URL -> the shard file names it lists; DataError when it is unreadable or a name is not a
    plain shard file name (a URL built from `../x` or from a command would leave the shard root)."""
    try:
        manifest = load_manifest(where)
    except ValueError as err:
        raise DataError(f"{err} (data.shards={root})") from None
    records = manifest.get("shards", [])
    names = [record.get("name") if isinstance(record, dict) else None for record in records] if isinstance(
        records, list) else [None]
    bad = [name for name in names if not (isinstance(name, str) and SHARD_FILE_NAME.match(name))]
    if bad:
        raise DataError(f"{where}: lists {bad[0]!r} as a shard; expected plain file names like train-000000.tar "
                        f"(data.shards={root})")
    return names


def check_local_files(urls: list[str], key: str) -> None:
    """Local shards must be regular files of a shard's size: a symlink to /dev/zero or a FIFO would be read forever;
    DataError naming the first one that is not."""
    for url in urls:
        if not is_url(url):
            try:
                regular_file_size(url)
            except OSError as err:
                raise DataError(f"{err} ({key})") from None


def warn_if_incomplete(manifest_path: Path) -> None:
    """A split whose manifest says shards are still missing trains on what is there, but says so."""
    try:
        manifest = load_json(read_regular_file(manifest_path, MAX_JSON_BYTES), str(manifest_path))
    except (OSError, ValueError):
        return
    if isinstance(manifest, dict) and manifest.get("complete") is False:
        warnings.warn(f"{manifest_path}: incomplete split, {manifest.get('present_shards')} of "
                      f"{manifest.get('num_shards')} shards written ({manifest.get('present_count')} of "
                      f"{manifest.get('count')} scenes); rerun `python -m simulate` to finish it", stacklevel=2)


def resolve_speech_shards(path: str, key: str) -> list[str]:
    """A speech shard folder, glob or URL pattern -> its shards; DataError when none."""
    pattern = shard_glob(path, SPEECH) if not is_url(path) and Path(path).is_dir() else path
    urls = expand(pattern)
    if not urls:
        raise DataError(f"no speech shards match {pattern} ({key}={path}); pack them with `python -m simulate speech`")
    check_local_files(urls, key)
    return urls


def resolve_audio_folder(path: str, key: str) -> list[str]:
    """A local folder of audio files -> their paths, sorted; DataError when none."""
    files = [str(Path(path) / p) for p in find_audio(path)] if Path(path).is_dir() else []
    if not files:
        raise DataError(f"no .wav/.flac/.ogg files under {path} ({key})")
    return files


def resolve_speech(cfg: TrainConfig, side: str) -> list[str]:
    """'train' or 'eval' -> that side's speech: speech shards or audio files, [] with synthetic speech; DataError
    when none (the eval side needs speech.eval_path: held-out voices)."""
    s = cfg.speech
    if s.source == "synthetic":
        return []
    path = s.train_path if side == "train" else s.eval_path
    if side == "eval" and not path:
        raise DataError(f"speech.eval_path is required with speech.source={s.source}: held-out voices for the "
                        f"fixed eval set")
    resolve = resolve_speech_shards if s.source == "shards" else resolve_audio_folder
    return resolve(path, f"speech.{side}_path")


def side_sources(cfg: TrainConfig, side: str) -> SplitSources:
    """'train' or 'eval' -> that side's shards and speech, resolved (no cross-checks: see check_sources)."""
    split = cfg.data.train_split if side == "train" else cfg.data.eval_split
    return SplitSources(resolve_shards(cfg, split), resolve_speech(cfg, side))


def check_enough_shards(paths: list[str], world_size: int, num_workers: int, what: str) -> None:
    """Every (rank, worker) pair needs its own shard; fewer gives a clear DataError, not an empty stream."""
    readers = world_size * max(num_workers, 1)
    if len(paths) < readers:
        raise DataError(f"{len(paths)} {what} shard(s) for {world_size} rank(s) x {max(num_workers, 1)} worker(s) "
                        f"= {readers} readers; write more shards or lower data.num_workers")


def same_location(a: str, b: str) -> bool:
    """Two paths or URLs name one place: equal URLs, or local paths equal once resolved (`x/../x`, symlinks)."""
    if is_url(a) or is_url(b):
        return a == b
    return Path(a).resolve() == Path(b).resolve()


def shard_identities(url: str) -> set[str]:
    """A shard -> what identifies it beyond its name: its resolved path (local), and its content's sha256 as its
    sidecar or split manifest records it (local and http(s); a local file without either is hashed). A `pipe:`
    command is only its own text: running one per shard just to compare would cost a process each."""
    if url.startswith("pipe:"):
        return {url}
    if not is_url(url):
        digest = sidecar_sha256(url) or sha256_file(Path(url))
        return {str(Path(url).resolve()), f"sha256:{digest}"}
    digest = sidecar_sha256(url)
    return {url} | ({f"sha256:{digest}"} if digest else set())


def sample_keys(path: str) -> list[str]:
    """A local shard -> its sample keys, from the tar headers alone (payloads are skipped, not read); [] for an
    unreadable file (the streams name damaged shards when they meet them)."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            return list(dict.fromkeys(member.name.partition(".")[0] for member in tar))
    except (tarfile.TarError, OSError, EOFError):
        return []


def sample_digest(path: str, key: str) -> str | None:
    """One sample of a local shard -> sha256 of its members' names and payloads; None when unreadable."""
    digest = hashlib.sha256()
    try:
        size = os.path.getsize(path)
        with tarfile.open(path, mode="r:") as tar:
            for member in sorted((m for m in tar if m.name.partition(".")[0] == key), key=lambda m: m.name):
                if member.sparse is not None or member.offset_data + member.size > size:
                    return None  # a forged size: the stream names the shard when it meets it
                handle = tar.extractfile(member)
                digest.update(f"{member.name}\0{member.size}\0".encode())
                digest.update(handle.read() if handle is not None else b"")
    except (tarfile.TarError, OSError, EOFError):
        return None
    return digest.hexdigest()


def check_samples_disjoint(train: list[str], evaluation: list[str]) -> None:
    """No eval sample is a training sample: the same key with the same member payloads, whatever the tar around it
    (a re-packed shard has new mtimes, a new sha256 and a new sidecar). Local shards only: keys come from the tar
    headers, and only samples whose key is in both are read and hashed. A URL is compared as a whole shard."""
    train_keys = {key: path for path in train if not is_url(path) for key in sample_keys(path)}
    for path in (p for p in evaluation if not is_url(p)):
        for key in sample_keys(path):
            if key not in train_keys:
                continue
            digest = sample_digest(path, key)
            if digest is not None and digest == sample_digest(train_keys[key], key):
                raise DataError(f"sample {key} is in both the training stream and the eval set: {path} holds it as "
                                f"{train_keys[key]} does (same key and payloads: a copied or re-packed shard); check "
                                f"data.train_glob / data.eval_glob / data.*_split")


def check_disjoint(cfg: TrainConfig, train: list[str], evaluation: list[str]) -> None:
    """The fixed eval set must share nothing with the training stream: not a split, a shard or a speech path."""
    d, s = cfg.data, cfg.speech
    if not d.train_glob and not d.eval_glob and d.train_split == d.eval_split:
        raise DataError(f"data.train_split and data.eval_split are both {d.train_split!r}: the eval set would be "
                        f"training data; set data.eval_split to a held-out split")
    if d.train_glob and d.train_glob == d.eval_glob:
        raise DataError(f"data.train_glob and data.eval_glob are the same pattern ({d.train_glob}); the eval set "
                        f"must be held out")
    seen = {ident: url for url in train for ident in shard_identities(url)}
    shared = [(url, seen[ident]) for url in evaluation for ident in shard_identities(url) if ident in seen]
    if shared:
        raise DataError(f"{len({e for e, _ in shared})} shard(s) are in both the training stream and the eval set, "
                        f"e.g. {shared[0][0]} is {shared[0][1]} (same file or same content); check data.train_glob / data.eval_glob / "
                        f"data.*_split")
    check_samples_disjoint(train, evaluation)
    if s.source != "synthetic" and s.train_path and same_location(s.train_path, s.eval_path):
        raise DataError(f"speech.train_path and speech.eval_path are both {s.train_path}: eval voices would be "
                        f"training voices; give speech.eval_path held-out speech")


def first_scene_meta(url: str) -> dict:
    """The metadata of a shard's first scene (read without a sha256 check: a damaged shard is named later)."""
    try:
        for key, parts in iter_samples(read_url(url), url):
            return decode_rir(key, parts, url).meta
    except (OSError, ShardError) as err:
        raise DataError(f"cannot read the first scene of {url}: {err}") from None
    raise DataError(f"{url}: holds no scene")


def check_setup(cfg: TrainConfig, meta: dict, where: str) -> None:
    """A split's array record (shards.array) vs the run's (TrainConfig.array): sample rate, speed of sound, two
    mics at model.mic_spacing (inside model.mic_spacing_range with spacing_input), model.num_slots sources (at most
    that many with count_head). The one place a run's array is checked against its data."""
    try:
        setup = ArraySetup.from_meta(meta, where)
    except ValueError as err:
        raise DataError(str(err)) from None
    run = cfg.array
    if setup.sr != run.sr:
        raise DataError(f"{where}: shards at {setup.sr} Hz, the run at sr={cfg.sr} Hz; set sr={setup.sr} "
                        f"(and model.sr) or simulate at {cfg.sr} Hz")
    if len(meta["mic_pos"]) != 2:
        raise DataError(f"{where}: shards of a {len(meta['mic_pos'])}-mic array; the model takes 2 mics "
                        f"(simulate with two mic_positions)")
    model = cfg.model
    if abs(setup.sound_speed - run.sound_speed) > 1e-6 * run.sound_speed:
        raise DataError(f"{where}: shards simulated with sound_speed={setup.sound_speed:g} m/s, the model steers with "
                        f"model.sound_speed={run.sound_speed:g}; set model.sound_speed={setup.sound_speed:g}")
    lo, hi = model.mic_spacing_range if model.spacing_input else (run.mic_spacing, run.mic_spacing)
    if not lo - 1e-4 <= setup.mic_spacing <= hi + 1e-4:
        expected = (f"model.mic_spacing_range=[{lo:g}, {hi:g}]" if model.spacing_input
                    else f"model.mic_spacing={run.mic_spacing:g} m")
        raise DataError(f"{where}: mics {setup.mic_spacing:.4f} m apart, the run expects {expected}; "
                        f"set model.mic_spacing={setup.mic_spacing:.4g} or simulate that spacing")
    if setup.num_sources > run.num_sources or (not model.count_head and setup.num_sources != run.num_sources):
        raise DataError(f"{where}: {setup.num_sources} sources per scene, the model has model.num_slots="
                        f"{model.num_slots}{' (and no count_head)' if not model.count_head else ''}; "
                        f"set model.num_slots={setup.num_sources}")


def check_sources(cfg: TrainConfig, world_size: int) -> tuple[SplitSources, SplitSources]:
    """Everything about the data that can fail before a model is built -> (train, eval) SplitSources: the run's
    lists, resolved once here and passed down."""
    train = resolve_shards(cfg, cfg.data.train_split)
    evaluation = resolve_shards(cfg, cfg.data.eval_split)
    check_enough_shards(train, world_size, cfg.data.num_workers, "train")
    check_disjoint(cfg, train, evaluation)
    for what, urls in (("train", train), ("eval", evaluation)):
        check_setup(cfg, first_scene_meta(urls[0]), f"{what} split ({urls[0]})")
    return SplitSources(train, resolve_speech(cfg, "train")), SplitSources(evaluation, resolve_speech(cfg, "eval"))
