"""Sample streams: a WebDataset pipeline in DataLoader workers, and the main-process side that accounts for
what failed.

    shard list -> split by rank -> split by worker -> resample forever (seeded)
               -> read (any URL) + sha256 check -> samples -> decode -> shuffle buffer

Workers only read and decode. Failures never vanish: every stage hands a failure to one injected error policy
(a `Handler`, as WebDataset's `handler=`). The training streams' policy (`mark_failures`) turns a damaged shard
(or one simulated for another setup than the run's) into a BAD_SHARD marker and a damaged sample into a
BAD_SAMPLE marker (training.data.markers), beside an UNCHECKED marker for a shard whose sidecar cannot be reached;
`Stream` (main process) warns naming each, counts them, and stops the run when more than `data.max_fail_share`
of the shards or of the samples failed. The fixed eval set reads through the same stages with `raise_failures`:
any failure is a DataError there.

A stream is a pure function of its seed and of the shards known to be damaged: `Stream.state()` and
`Stream.set_loader` let a resumed run reopen it where the uninterrupted run reopened it (training.data.batches).
"""
from __future__ import annotations

import json
import random
import warnings
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import webdataset as wds

from shards.audio import decode_audio, fit_length
from shards.array import ArraySetup
from shards.files import ShardError, iter_samples, read_url, sha256_bytes, sidecar_sha256
from shards.layout import stable_seed
from shards.samples import decode_rir, speech_member
from training.data.markers import (BAD_SAMPLE, BAD_SHARD, ERROR, KEY, SAMPLES, SHARD_OK, UNCHECKED, failure,
                              is_marker)
from training.data.sources import DataError

Decode = Callable[[str, dict[str, bytes], str], dict]
CheckSetup = Callable[[dict, str], None]  # (a scene's metadata, where) -> None; DataError for another setup
# The error policy of every stage: (BAD_SHARD or BAD_SAMPLE, the shard url or 'url:key', why) -> the marker to
# yield in place of what failed, or an exception raised.
Handler = Callable[[str, str, str], dict]


# ----------------------------------------------------------------------------------------------
# Error policies


def mark_failures(bad: set[str]) -> Handler:
    """The training streams' policy: a failed shard joins `bad` (never drawn again by this worker); every failure
    becomes its marker, for Stream to warn about and count."""
    def handle(kind: str, name: str, error: str) -> dict:
        if kind == BAD_SHARD:
            bad.add(name)
        return failure(kind, name, error)
    return handle


def raise_failures(what: str) -> Handler:
    """The fixed eval set's policy: any failure is a DataError naming `what`, the shard or sample, and why."""
    def handle(kind: str, name: str, error: str) -> dict:
        raise DataError(f"{what} {'shard' if kind == BAD_SHARD else 'sample'} {name}: {error}")
    return handle


# ----------------------------------------------------------------------------------------------
# Decoders (worker side): (key, members, shard url) -> a sample dict of CPU tensors


def decode_scene(max_len: int, check_setup: CheckSetup | None = None) -> Decode:
    """-> decoder to {key, url, rir float32 [M, S, L<=max_len], angles float32 [2, S] (azimuth, lateral), spacing
    (mic 0 to mic 1, metres), meta};
    `check_setup` raises DataError for a scene of another array setup than the run's (its shard is skipped)."""
    def decode(key: str, parts: dict[str, bytes], url: str) -> dict:
        sample = decode_rir(key, parts, url)
        if check_setup is not None:
            check_setup(sample.meta, f"{url}: {key}")
        angles = torch.from_numpy(np.stack([sample.angles("azimuth"), sample.angles("lateral")]))
        spacing = ArraySetup.from_meta(sample.meta, f"{url}: {key}").mic_spacing
        return {KEY: key, "url": url, "rir": torch.from_numpy(sample.rir[..., :max_len].copy()),
                "angles": angles, "spacing": spacing, "meta": json.dumps(sample.meta)}
    return decode


def speech_audio(key: str, parts: dict[str, bytes], url: str, sr: int) -> np.ndarray:
    """A speech sample's members -> its audio, mono float32 [T] at `sr`: the one speech decoder (the training stream
    and the fixed eval set)."""
    ext, _ = speech_member(key, parts, url)
    return decode_audio(parts[ext], f"{url}:{key}.{ext}", sr=sr)[0]


def decode_speech(sr: int, samples: int, seed: int) -> Decode:
    """-> decoder to {key, url, audio float32 [samples]}: mono at `sr`, a random non-silent crop (or padded)."""
    rng = random.Random(seed)

    def decode(key: str, parts: dict[str, bytes], url: str) -> dict:
        audio = speech_audio(key, parts, url, sr)
        return {KEY: key, "url": url, "audio": torch.from_numpy(fit_length(audio, samples, rng).copy())}
    return decode


# ----------------------------------------------------------------------------------------------
# Pipeline stages (each a generator over the previous stage's items)


def split_by_rank(rank: int, world_size: int) -> Callable:
    """Explicit nodesplitter: rank r keeps every world_size-th shard starting at r."""
    def stage(src):
        for index, item in enumerate(src):
            if index % world_size == rank:
                yield item
    return stage


def resample_forever(seed: tuple[int, ...], bad: set[str]) -> Callable:
    """resampled=True: draw this worker's shards with replacement forever, seeded by (seed..., worker)."""
    def stage(src):
        urls = [item["url"] for item in src]
        info = torch.utils.data.get_worker_info()
        rng = random.Random(stable_seed(*seed, info.id if info else 0))
        while True:
            alive = [u for u in urls if u not in bad]
            if not alive:
                return
            yield {"url": rng.choice(alive)}
    return stage


def read_checked(url: str, verify: bool) -> tuple[bytes, bool]:
    """A shard's path or URL -> (its bytes, whether a sidecar sha256 checked them); DataError on a mismatch."""
    data = read_url(url)
    want = sidecar_sha256(url) if verify else None
    if want is not None and sha256_bytes(data) != want:
        raise DataError(f"sha256 mismatch (expected {want[:12]}..., from its sidecar)")
    return data, want is not None or not verify


def why(err: Exception, url: str) -> str:
    """An error about a shard -> its message without the shard's own name in front (the marker names it)."""
    return str(err).removeprefix(f"{url}: ")


def read_verified(verify: bool, handler: Handler) -> Callable:
    """{url} -> {url, data} after a sha256 check (and an UNCHECKED marker first when no sidecar was reachable);
    an unreadable or mismatching shard goes to `handler`."""
    def stage(src):
        for item in src:
            url = item["url"]
            try:
                data, checked = read_checked(url, verify)
            except (OSError, DataError) as err:
                yield handler(BAD_SHARD, url, why(err, url))
                continue
            if not checked:
                yield {UNCHECKED: url}
            yield {"url": url, "data": data}
    return stage


def expand_samples(decode: Decode, handler: Handler) -> Callable:
    """{url, data} -> decoded samples, then a SHARD_OK marker; markers pass through. A tar error, an empty tar or
    a scene of another setup (DataError) goes to `handler` as the shard's failure (the rest of the shard is
    skipped), any other decoding error as the sample's."""
    def stage(src):
        for item in src:
            if "url" not in item or "data" not in item:
                yield item  # a marker
                continue
            url = item["url"]
            try:
                members = list(iter_samples(item["data"], url))
            except ShardError as err:
                yield handler(BAD_SHARD, url, why(err, url))
                continue
            if not members:
                yield handler(BAD_SHARD, url, "no samples in the tar")
                continue
            decoded = 0
            for key, parts in members:
                try:
                    sample = decode(key, parts, url)
                except DataError as err:  # the whole shard belongs to another setup
                    yield handler(BAD_SHARD, url, why(err, url))
                    break
                except (ShardError, ValueError, KeyError, TypeError) as err:
                    yield handler(BAD_SAMPLE, f"{url}:{key}", f"{type(err).__name__}: {err}")
                    continue
                decoded += 1
                yield sample
            else:
                yield {SHARD_OK: url, SAMPLES: decoded}
    return stage


def read_shards(urls: Iterable[str], decode: Decode, verify: bool, handler: Handler) -> Iterator[dict]:
    """Shards in the given order -> their decoded samples and markers (read_verified, then expand_samples), in one
    process: how the fixed eval set reads its shards."""
    items = ({"url": url} for url in urls)
    return expand_samples(decode, handler)(read_verified(verify, handler)(items))


def shuffle_samples(size: int, initial: int, seed: int) -> Callable:
    """A shuffle buffer that starts emitting at `initial` samples and grows to `size` (one out per two in until
    then); markers pass straight through, so a damaged shard is reported when it is met, not when a buffer
    happens to release its marker."""
    def stage(src):
        rng, buffer, arrivals = random.Random(seed), [], 0
        for item in src:
            if is_marker(item):
                yield item
                continue
            buffer.append(item)
            arrivals += 1
            if len(buffer) < min(initial, size) or (len(buffer) < size and arrivals % 2):
                continue
            index = rng.randrange(len(buffer))
            buffer[index], buffer[-1] = buffer[-1], buffer[index]
            yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer
    return stage


def shard_pipeline(urls: list[str], decode: Decode, rank: int, world_size: int, seed: tuple[int, ...],
                   shuffle_buffer: int, verify: bool, known_bad: Iterable[str] = ()) -> wds.DataPipeline:
    """The worker-side chain: list -> rank split -> worker split -> resample -> read -> decode -> shuffle."""
    bad: set[str] = set(known_bad)  # per worker process: shards found damaged are never drawn again
    handler = mark_failures(bad)
    return wds.DataPipeline(
        wds.SimpleShardList(urls),
        split_by_rank(rank, world_size),
        wds.split_by_worker,
        resample_forever(seed, bad),
        read_verified(verify, handler),
        expand_samples(decode, handler),
        shuffle_samples(shuffle_buffer, max(1, shuffle_buffer // 4), stable_seed(*seed, 7)),
    )


def folder_pipeline(files: list[str], sr: int, samples: int, rank: int, world_size: int,
                    seed: tuple[int, ...], shuffle_buffer: int, known_bad: Iterable[str] = ()) -> wds.DataPipeline:
    """Audio folder: list -> rank split -> worker split -> resample -> decode (any rate, downmixed) -> crop."""
    bad: set[str] = set(known_bad)
    return wds.DataPipeline(
        wds.SimpleShardList(files), split_by_rank(rank, world_size), wds.split_by_worker,
        resample_forever(seed, bad), read_files(sr, samples, stable_seed(*seed, 11), mark_failures(bad)),
        shuffle_samples(shuffle_buffer, 1, stable_seed(*seed, 13)),
    )


def read_files(sr: int, samples: int, seed: int, handler: Handler) -> Callable:
    """{url} of an audio file -> {key, url, audio float32 [samples]} (mono at `sr`, a random non-silent crop or
    padded) and a SHARD_OK marker; a file that does not decode goes to `handler` (a file is a folder's shard)."""
    rng = random.Random(seed)

    def stage(src):
        for item in src:
            url = item["url"]
            try:
                audio, _ = decode_audio(url, url, sr=sr)
            except ValueError as err:
                yield handler(BAD_SHARD, url, why(err, url))
                continue
            yield {KEY: url, "url": url, "audio": torch.from_numpy(fit_length(audio, samples, rng).copy())}
            yield {SHARD_OK: url, SAMPLES: 1}
    return stage


def make_loader(pipeline: wds.DataPipeline, num_workers: int, seed: int) -> torch.utils.data.DataLoader:
    """Workers decode; batch_size=None passes single samples through; never through accelerator.prepare.
    The loader draws its workers' base seed from its own generator, never from the global RNG that a saved
    state restores (so opening a stream does not shift dropout draws)."""
    return torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=num_workers,
                                       persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers else None,
                                       generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------
# The main-process side


class Stream:
    """Main-process side of a DataLoader stream: yields good samples, counts and warns about bad ones.

    Raises DataError when more than `max_fail_share` of the opened shards, or of the samples met, failed
    (once `min_shards` shards were opened), or when the workers run out of readable shards.
    """

    def __init__(self, loader: torch.utils.data.DataLoader, what: str, max_fail_share: float, min_shards: int,
                 log: Callable[[dict], None] | None = None):
        self.loader, self.what = loader, what
        self.iterator: Iterator | None = None
        self.max_fail_share, self.min_shards, self.log = max_fail_share, min_shards, log
        self.ok_shards: set[str] = set()
        self.bad_shards: dict[str, str] = {}
        self.unchecked: set[str] = set()
        self.bad_samples = 0
        self.good_samples = 0  # decoded without error (counted per shard, when the shard is done)

    def counters(self) -> dict[str, int]:
        return {f"{self.what}_bad_shards": len(self.bad_shards), f"{self.what}_bad_samples": self.bad_samples,
                f"{self.what}_shards_read": len(self.ok_shards) + len(self.bad_shards)}

    def set_loader(self, loader: torch.utils.data.DataLoader) -> None:
        """Read from `loader` from now on (its workers start at the next `next`); the accounting carries over."""
        self.close()
        self.loader = loader

    def state(self) -> dict[str, Any]:
        """The accounting as plain JSON, for a saved training state."""
        return {"ok_shards": sorted(self.ok_shards), "bad_shards": dict(sorted(self.bad_shards.items())),
                "unchecked": sorted(self.unchecked), "bad_samples": self.bad_samples,
                "good_samples": self.good_samples}

    def restore(self, state: dict[str, Any]) -> None:
        """The accounting of `state()`, as saved with a training state."""
        self.ok_shards, self.bad_shards = set(state["ok_shards"]), dict(state["bad_shards"])
        self.unchecked = set(state["unchecked"])
        self.bad_samples, self.good_samples = int(state["bad_samples"]), int(state["good_samples"])

    def next(self) -> dict[str, Any]:
        if self.iterator is None:
            self.iterator = iter(self.loader)
        while True:
            try:
                item = next(self.iterator)
            except StopIteration:
                raise DataError(f"no readable {self.what} shards left ({len(self.bad_shards)} damaged: "
                                f"{', '.join(sorted(self.bad_shards)[:3])})") from None
            if BAD_SHARD in item or BAD_SAMPLE in item:
                self._failure(item)
                continue
            if UNCHECKED in item:
                if not self.unchecked:
                    warnings.warn(f"{self.what} shard {item[UNCHECKED]} has no reachable sidecar (.json beside "
                                  f"the .tar): its sha256 is not checked; the same goes for any other such shard",
                                  RuntimeWarning, stacklevel=2)
                self.unchecked.add(item[UNCHECKED])
                continue
            if SHARD_OK in item:
                self.ok_shards.add(item[SHARD_OK])
                self.good_samples += item[SAMPLES]
                continue
            return item

    def _failure(self, item: dict) -> None:
        if BAD_SHARD in item:
            name = item[BAD_SHARD]
            self.bad_shards[name] = item[ERROR]
            self.ok_shards.discard(name)
            message = f"skipped damaged {self.what} shard {name}: {item[ERROR]}"
        else:
            name = item[BAD_SAMPLE]
            self.bad_samples += 1
            message = f"skipped damaged {self.what} sample {name}: {item[ERROR]}"
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        if self.log is not None:
            self.log({"event": "data_error", "what": self.what, "item": name, "error": item[ERROR], **self.counters()})
        opened = len(self.ok_shards) + len(self.bad_shards)
        if opened < self.min_shards:
            return
        met = self.good_samples + self.bad_samples
        for failed, total, unit in ((len(self.bad_shards), opened, "shards"), (self.bad_samples, met, "samples")):
            share = failed / max(total, 1)
            if share > self.max_fail_share:
                raise DataError(f"{failed} of {total} {self.what} {unit} failed ({share:.0%} > "
                                f"data.max_fail_share={self.max_fail_share}); last: {message}")

    def close(self) -> None:
        self.iterator = None  # a dropped iterator shuts its workers down
