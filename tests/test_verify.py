"""`simulate verify`: every damaged, missing, stray or leaking shard is named; a clean set passes."""
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from simulate import generate_dataset
from shards.files import atomic_write, read_samples, tar_bytes, write_sidecar
from shards.manifest import merge_manifest
from simulate.verify import verify

SMALL = ("shard_size=2", "rt60_range=[0.1,0.2]", "image_count_range=[64,128]")


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "shards"
    generate_dataset(out, splits={"train": 4, "eval": 4}, overrides=SMALL)
    return out


@pytest.fixture
def out(clean, tmp_path):
    copy = tmp_path / "shards"
    shutil.copytree(clean, copy)
    return copy


def only_problem(root):
    problems, _ = verify(root)
    assert len(problems) == 1, problems
    return problems[0]


def test_clean_set_passes(out):
    problems, summaries = verify(out)
    assert problems == [] and len(summaries) == 2
    assert verify(out / "train")[0] == []  # a single split folder works too


def test_flipped_byte_is_named(out):
    shard = out / "train" / "train-000001.tar"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x01
    shard.write_bytes(bytes(data))
    assert "train-000001.tar: sha256" in only_problem(out)


def test_truncated_shard_is_named(out):
    shard = out / "eval" / "eval-000000.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    assert "eval-000000.tar" in only_problem(out) and "truncated" in only_problem(out)


def test_missing_and_stray_shards_are_named(out):
    (out / "train" / "train-000000.tar").unlink()
    assert "train-000000.tar: missing" in only_problem(out)
    shutil.copy(out / "eval" / "eval-000001.tar", out / "eval" / "eval-000009.tar")
    problems, _ = verify(out)
    assert any("eval-000009.tar: shard not listed" in line for line in problems)


def test_sample_that_does_not_decode_is_named_even_with_matching_sha(out):
    # Rewrite a shard whose rir.npy holds a pickled object array and re-seal sidecar and manifest,
    # so only decoding (allow_pickle=False) can catch it.
    shard = out / "train" / "train-000001.tar"
    members = []
    for key, parts in read_samples(shard):
        for ext, data in parts.items():
            if ext == "rir.npy" and key.endswith("3"):
                buffer = io.BytesIO()
                np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
                data = buffer.getvalue()
            members.append((f"{key}.{ext}", data))
    atomic_write(shard, tar_bytes(members))
    sidecar = json.loads(shard.with_suffix(".json").read_text())
    write_sidecar(shard, {k: v for k, v in sidecar.items() if k not in ("bytes", "sha256", "name")})
    manifest = json.loads((out / "train" / "manifest.json").read_text())
    header = {k: v for k, v in manifest.items()
              if k not in ("count", "num_shards", "present_count", "present_shards", "complete", "shards")}
    merge_manifest(out / "train", header, [s["name"] for s in manifest["shards"]], manifest["count"])
    problem = only_problem(out)
    assert "train-000001.tar" in problem and "train-000000003.rir.npy" in problem


def test_eval_repeating_train_scenes_is_a_leak(out, tmp_path):
    # The seed recipe's bug: eval geometries equal to train ones. Rebuild it by using train as eval.
    shutil.rmtree(out / "eval")
    shutil.copytree(out / "train", out / "eval")
    problem = only_problem(out)
    assert "repeats" in problem and "eval" in problem and "train-000000.tar" in problem


def test_cli_exit_codes(out):
    run = lambda: subprocess.run([sys.executable, "-m", "simulate", "verify", str(out)],
                                 capture_output=True, text=True)
    assert run().returncode == 0
    shard = out / "eval" / "eval-000001.tar"
    shard.write_bytes(shard.read_bytes()[:-10240])
    bad = run()
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and "eval-000001.tar" in bad.stderr
    empty = subprocess.run([sys.executable, "-m", "simulate", "verify", str(out / "nothing")],
                           capture_output=True, text=True)
    assert empty.returncode == 1 and "no manifest.json" in empty.stderr


def reseal(shard, manifest_dir):
    """Rewrite a shard's sidecar and its split's manifest to match the shard's current bytes (what a careless
    repair does): only content checks can still tell."""
    sidecar = json.loads(shard.with_suffix(".json").read_text())
    write_sidecar(shard, {k: v for k, v in sidecar.items() if k not in ("bytes", "sha256", "name")})
    manifest = json.loads((manifest_dir / "manifest.json").read_text())
    header = {k: v for k, v in manifest.items()
              if k not in ("count", "num_shards", "present_count", "present_shards", "complete", "shards")}
    merge_manifest(manifest_dir, header, [s["name"] for s in manifest["shards"]], manifest["count"])


def test_every_split_the_folder_should_have_is_checked(out):
    (out / "train" / "manifest.json").unlink()
    (out / "train" / "train-000001.tar").unlink()
    problems, summaries = verify(out)
    assert len(problems) == 1 and f"{out / 'train' / 'manifest.json'}: missing" in problems[0], problems
    assert len(summaries) == 1  # eval is still checked
    shutil.rmtree(out / "train")  # the whole split gone: dataset.json still lists it
    problem = only_problem(out)
    assert "train" in problem and "dataset.json lists split 'train'" in problem


def test_a_later_shard_of_another_setup_is_named(out, tmp_path):
    # Issue 20: only the first shard's setup used to be looked at. Shard 1 comes from an 8 kHz simulation,
    # sealed into the 16 kHz split (sidecar and manifest rewritten), so every byte check passes.
    other = tmp_path / "other"
    generate_dataset(other, splits={"train": 4}, overrides=(*SMALL, "sr=8000", "highpass_hz=40"))
    shutil.copy(other / "train" / "train-000001.tar", out / "train" / "train-000001.tar")
    reseal(out / "train" / "train-000001.tar", out / "train")
    problem = only_problem(out)
    assert "train-000001.tar" in problem and "sr 8000" in problem and "16000" in problem


def test_mics_moved_in_a_later_shard_are_named(out, tmp_path):
    other = tmp_path / "other"
    generate_dataset(other, splits={"train": 4}, overrides=(*SMALL, "mic_positions=[[-0.04,0,0],[0.04,0,0]]"))
    shutil.copy(other / "train" / "train-000001.tar", out / "train" / "train-000001.tar")
    reseal(out / "train" / "train-000001.tar", out / "train")
    problem = only_problem(out)
    assert "train-000001.tar" in problem and "mics at" in problem


def rewrite_members(shard, change, mtime=None):
    """Rewrite a shard with change(key, ext, data) -> data applied to every member (and, with mtime, tar headers of
    that mtime), then reseal its sidecar and manifest: every sha256 check passes."""
    import tarfile
    members = [(f"{key}.{ext}", change(key, ext, data)) for key, parts in read_samples(shard) for ext, data in parts.items()]
    if mtime is None:
        atomic_write(shard, tar_bytes(members))
    else:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), mtime
                tar.addfile(info, io.BytesIO(data))
        atomic_write(shard, buffer.getvalue())
    reseal(shard, shard.parent)


def nudged(key, ext, data, sample="3"):
    """The peak RIR value of the sample whose key ends in `sample` made 1% larger: a plausible shard, but not the one
    its config renders."""
    if ext != "rir.npy" or not key.endswith(sample):
        return data
    rir = np.load(io.BytesIO(data), allow_pickle=False)
    rir[0, 0, np.argmax(np.abs(rir[0, 0]))] *= 1.01
    buffer = io.BytesIO()
    np.save(buffer, rir, allow_pickle=False)
    return buffer.getvalue()


def test_regenerate_finds_a_shard_rewritten_together_with_its_sha256(out):
    """Issue 27: plain verify passes a shard whose manifest sha256 was rewritten with it; --regenerate renders
    every shard again from the manifest's config and seed and compares."""
    from simulate.regenerate import regenerate
    problems, summaries = regenerate(out)
    assert problems == [] and len(summaries) == 2
    rewrite_members(out / "train" / "train-000001.tar", nudged)
    rewrite_members(out / "eval" / "eval-000000.tar", lambda key, ext, data: data, mtime=1_700_000_000)
    assert verify(out)[0] == []  # every recorded sha256 matches
    problems, _ = regenerate(out, workers=2)
    assert len(problems) == 2, problems
    repacked, nudge = problems  # splits in name order
    assert "train-000001.tar: differs from its render" in nudge and "train-000000003 member rir.npy" in nudge
    assert "eval-000000.tar: differs from its render" in repacked and "tar of other bytes" in repacked


def test_regenerate_refuses_a_recorded_config_that_was_edited(out):
    from simulate.regenerate import regenerate
    path = out / "train" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["config"]["seed"] = 1
    path.write_text(json.dumps(manifest))
    problems, _ = regenerate(out)
    assert problems == [f"{path}: config_hash does not match the config it records (edited)"]


def test_cli_verify_regenerate_exit_codes(out):
    run = lambda *flags: subprocess.run([sys.executable, "-m", "simulate", "verify", *flags, str(out)],
                                        capture_output=True, text=True)
    ok = run("--regenerate", "--workers", "1", "--no-progress")
    assert ok.returncode == 0 and ok.stdout.count("regenerated: ") == 2, ok.stderr
    rewrite_members(out / "train" / "train-000001.tar", nudged)
    assert run().returncode == 0  # plain verify is unchanged: it cannot tell
    bad = run("--regenerate", "--workers", "1", "-q")
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 1 and len(lines) == 1 and "train-000001.tar: differs from its render" in lines[0], bad.stderr


def test_regenerate_allows_float_rounding_only_in_a_shard_written_on_cuda(out):
    """A CUDA render matches the CPU's up to float rounding: such a shard (its sidecar says device cuda) is compared
    member by member, json byte for byte and RIRs within CUDA_TOLERANCE of their peak; a CPU shard byte for byte."""
    from simulate.regenerate import regenerate

    def rounded(key, ext, data):
        if not ext.endswith("npy"):
            return data
        values = np.load(io.BytesIO(data), allow_pickle=False)
        buffer = io.BytesIO()
        np.save(buffer, (values * np.float32(1 + 1e-6)).astype(np.float32), allow_pickle=False)
        return buffer.getvalue()

    def as_cuda(shard):
        sidecar = json.loads(shard.with_suffix(".json").read_text())
        shard.with_suffix(".json").write_text(json.dumps({**sidecar, "device": "cuda"}))
        reseal(shard, shard.parent)

    for name in ("train-000000.tar", "train-000001.tar"):
        rewrite_members(out / "train" / name, rounded)
    as_cuda(out / "train" / "train-000000.tar")
    problems, _ = regenerate(out)
    assert len(problems) == 1 and "train-000001.tar: differs" in problems[0], problems  # the CPU shard
    rewrite_members(out / "train" / "train-000000.tar", lambda key, ext, data: nudged(key, ext, data, sample="1"))
    as_cuda(out / "train" / "train-000000.tar")
    problems, _ = regenerate(out)
    assert any("train-000000.tar: differs" in p and "train-000000001 member rir.npy" in p for p in problems), problems
