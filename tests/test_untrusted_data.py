"""Untrusted data is bounded (issue 33, part 3): what a shard, manifest, config or weights file claims is checked
before it is read or allocated, parsing depth and number sizes are bounded, every failure is one line naming the
file, a bad sample in training is skipped and counted, `verify` names it, and non-regular files are refused where
a shard is expected. Each hostile file is made for real here."""
import http.server
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import threading
import tracemalloc

import numpy as np
import pytest
import soundfile
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from configs import ConfigError
from run_helpers import ROOT, TINY, subprocess_env
from shards.files import ShardError, iter_samples, read_http, read_url, sha256_file, tar_bytes
from shards.layout import sidecar_path
from shards.manifest import load_manifest
from shards.samples import decode_rir
from simulate import generate_dataset
from simulate.speech import pack_speech
from simulate.verify import verify
from ssl_model.loading import CheckpointError, load_localizer
from training.config import load_train_config
from training.data.markers import BAD_SAMPLE, KEY
from training.data.sources import DataError, resolve_shards
from training.data.streams import decode_scene, expand_samples, mark_failures

TWO_TALKER = ROOT / "ssl_model" / "pretrained" / "two-talker" / "model.safetensors"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("untrusted")
    generate_dataset(out, splits={"train": 4, "eval": 2}, overrides=("shard_size=2", "rt60_range=[0.1,0.2]"))
    return out


def copy_root(shards, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(shards, root)
    return root


def members_of(path):
    return [(f"{key}.{ext}", data) for key, parts in iter_samples(path.read_bytes(), str(path))
            for ext, data in parts.items()]


def rewrite_shard(path, members):
    """Write `members` as the shard at `path` and record its new bytes and sha256 in its sidecar and manifest, so
    only the content is hostile (verify reaches the samples)."""
    path.write_bytes(tar_bytes(members))
    record = json.loads(sidecar_path(path).read_text())
    record.update(bytes=path.stat().st_size, sha256=sha256_file(path))
    sidecar_path(path).write_text(json.dumps(record))
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["shards"] = [record if r["name"] == path.name else r for r in manifest["shards"]]
    manifest_path.write_text(json.dumps(manifest))


def with_json(members, key, text):
    return [(name, text.encode() if name == f"{key}.json" else data) for name, data in members]


def hostile_json(members, case):
    key = members[0][0].partition(".")[0]
    meta = json.loads(dict(members)[f"{key}.json"])
    if case == "deep":
        return key, with_json(members, key, '{"x": ' + "[" * 200_000 + "]" * 200_000 + "}")
    text = json.dumps(meta).replace(f'"azimuth_deg": {json.dumps(meta["sources"][0]["azimuth_deg"])}',
                                    '"azimuth_deg": ' + "9" * 400, 1)
    return key, with_json(members, key, text)


@pytest.mark.parametrize("case", ["deep", "huge_int"])
def test_hostile_sample_json_is_a_skipped_counted_sample_in_training_and_named_by_verify(case, shards, tmp_path):
    root = copy_root(shards, tmp_path)
    shard = root / "train" / "train-000000.tar"
    key, members = hostile_json(members_of(shard), case)
    rewrite_shard(shard, members)
    items = list(expand_samples(decode_scene(4000), mark_failures(set()))([{"url": str(shard),
                                                                             "data": shard.read_bytes()}]))
    bad = [item for item in items if BAD_SAMPLE in item]
    good = [item for item in items if KEY in item]
    assert len(bad) == 1 and bad[0][BAD_SAMPLE].endswith(key) and len(good) == 1  # the other sample still trains
    problems, _ = verify(root)
    assert len(problems) == 1 and str(shard) in problems[0] and "\n" not in problems[0], problems
    assert ("nested deeper" if case == "deep" else "400 digits") in problems[0]


def gnu_sparse_member(claimed: int) -> bytes:
    """A tar holding one GNU sparse member whose header claims `claimed` bytes but stores 512."""
    data = bytearray(tar_bytes([("s-000000000.json", b"{}".ljust(512))]))
    header = data[:512]
    header[156:157] = b"S"  # GNUTYPE_SPARSE
    header[257:265] = b"ustar  \x00"  # the GNU magic
    header[386:398] = b"%011o\x00" % 0  # one sparse block: offset 0, 512 bytes
    header[398:410] = b"%011o\x00" % 512
    header[482:483] = b"\x00"  # no extended sparse headers
    header[483:495] = b"%011o\x00" % claimed  # the size it claims
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\x00 " % sum(header)
    data[:512] = header
    return bytes(data)


def test_a_sparse_tar_member_claiming_gigabytes_is_refused_before_it_is_read():
    data = gnu_sparse_member(200_000_000)
    assert tarfile.open(fileobj=io.BytesIO(data)).next().size == 200_000_000  # what it claims
    tracemalloc.start()
    try:
        with pytest.raises(ShardError, match="sparse") as err:
            list(iter_samples(data, "forged.tar"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(err.value).startswith("forged.tar: ") and peak < 20 << 20


def npy_claiming(shape) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + bytes(64)


def test_an_npy_header_claiming_a_huge_shape_is_refused_without_allocating(shards):
    shard = shards / "train" / "train-000000.tar"
    key, parts = next(iter_samples(shard.read_bytes(), str(shard)))
    parts = {**parts, "rir.npy": npy_claiming((2, 2, 78_125_000))}  # 1.25 GB claimed in 192 bytes
    tracemalloc.start()
    try:
        with pytest.raises(ShardError, match=r"rir.npy: header claims shape \(2, 2, 78125000\)"):
            decode_rir(key, parts, "s.tar")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20


def test_a_manifest_nested_100000_deep_is_one_line(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("[" * 100_000)
    with pytest.raises(ValueError) as err:
        load_manifest(path)
    assert str(err.value).startswith(f"{path}: ") and "nested deeper" in str(err.value)


def test_a_yaml_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    lines = ["l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 6)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nmix:\n  gain_db: *l5\n")  # a million values in a known list key
    with pytest.raises(ConfigError) as err:
        load_train_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "aliases expand" in message and len(message) < 300


class Endless(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        if self.path == "/claims":
            self.send_header("Content-Length", str(5 << 30))  # claims 5 GB, sends a little
        self.end_headers()
        try:
            for _ in range(100_000 if self.path == "/endless" else 1):
                self.wfile.write(bytes(1 << 16))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def endless_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_bodies_are_bounded_by_what_they_claim_and_what_they_send(endless_server, monkeypatch):
    monkeypatch.setenv("SSL_HTTP_DEADLINE_S", "20")
    with pytest.raises(OSError, match=r"claims 5368709120 bytes, more than"):
        read_url(f"{endless_server}/claims")
    with pytest.raises(OSError, match=r"more than 1048576 bytes \(an endless or oversized body\)"):
        read_http(f"{endless_server}/endless", limit=1 << 20)


def test_non_regular_shard_paths_are_refused_where_shards_are_listed(shards, tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    shutil.copy(shards / "train" / "train-000000.tar", folder / "train-000000.tar")
    os.symlink("/dev/zero", folder / "train-000001.tar")
    cfg = load_train_config(TINY, [f"data.train_glob={folder}/*.tar"])
    with pytest.raises(DataError, match=r"train-000001.tar: not a regular file \(a character device\)"):
        resolve_shards(cfg, cfg.data.train_split)
    (folder / "train-000001.tar").unlink()
    os.mkfifo(folder / "train-000001.tar")
    with pytest.raises(DataError, match=r"train-000001.tar: not a regular file \(a FIFO\)"):
        resolve_shards(cfg, cfg.data.train_split)


def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_reading_a_fifo_or_dev_zero_as_a_shard_is_one_line_and_never_hangs(kind, tmp_path):
    path = tmp_path / "train-000000.tar"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)
    code = f"from shards.files import read_url\ntry:\n    read_url({str(path)!r})\nexcept OSError as err:\n    print(err)\n"
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=120, preexec_fn=limit_memory)  # a hang guard, not a speed target
    assert proc.returncode == 0 and "not a regular file" in proc.stdout, proc.stderr[-500:]


def forged_flac(frames_claimed: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.full(16000, 0.1, dtype=np.float32), 16000, format="FLAC", subtype="PCM_16")
    data = bytearray(buffer.getvalue())
    info = int.from_bytes(data[8:42], "big")  # STREAMINFO: total samples are 36 bits at bit 108
    shift = 34 * 8 - 108 - 36
    info = (info & ~(((1 << 36) - 1) << shift)) | (frames_claimed << shift)
    data[8:42] = info.to_bytes(34, "big")
    return bytes(data)


def test_a_flac_claiming_2_to_the_36_samples_is_skipped_and_counted_by_the_speech_packer(tmp_path):
    audio = tmp_path / "audio"
    (audio / "a").mkdir(parents=True)
    soundfile.write(audio / "a" / "good.wav", np.random.default_rng(0).uniform(-0.5, 0.5, 16000), 16000)
    (audio / "a" / "forged.flac").write_bytes(forged_flac((1 << 36) - 1))
    manifest = json.loads(pack_speech(audio, tmp_path / "out").read_text())
    assert manifest["present_count"] == 1 and len(manifest["skipped"]) == 1
    assert manifest["skipped"][0]["path"] == "a/forged.flac" and "68719476735 frames" in manifest["skipped"][0]["reason"]


def test_a_safetensors_dtype_relabelled_f32_to_i32_is_refused(tmp_path):
    data = TWO_TALKER.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = data[8:8 + length]
    assert b'"dtype":"F32"' in header
    forged = tmp_path / "model.safetensors"
    forged.write_bytes(data[:8] + header.replace(b'"dtype":"F32"', b'"dtype":"I32"', 1) + data[8 + length:])
    with pytest.raises(CheckpointError) as err:
        load_localizer(forged)
    assert str(err.value).startswith(f"{forged}: tensor ") and "stored as I32" in str(err.value)


def test_model_metadata_nested_100000_deep_is_one_line(tmp_path):
    with safe_open(str(TWO_TALKER), framework="pt") as handle:
        metadata = dict(handle.metadata())
    metadata["localizer"] = "[" * 100_000 + "]" * 100_000
    forged = tmp_path / "deep.safetensors"
    save_file(load_file(str(TWO_TALKER)), str(forged), metadata=metadata)
    with pytest.raises(CheckpointError, match="nested deeper than"):
        load_localizer(forged)
