"""Issue 6, simulate rows, injected for real: SIGKILL mid-run, two concurrent ranks, damaged shards."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hang_guard import HANG_S

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[1]
# Enough shards that a kill lands while workers are rendering; short RIRs keep it quick.
SPLITS = "train=240,eval=40"
OVERRIDES = ["shard_size=8", "rt60_range=[0.1,0.4]"]


def command(out, *extra):
    return [sys.executable, "-m", "simulate", "--out", str(out), "--splits", SPLITS, "--no-progress",
            *extra, *OVERRIDES]


def run(out, *extra, env=None):
    done = subprocess.run(command(out, *extra), capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    return done


def files(root):
    """Shards, sidecars and manifests under root -> bytes (temporary and lock files left out)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in (".tar", ".json")}


def verify(out):
    return subprocess.run([sys.executable, "-m", "simulate", "verify", str(out)], capture_output=True,
                          text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "shards"
    run(out, "--workers", "1")
    return files(out)


def killed_at(out, shard, workers):
    """Run with the writer's test hook set: it SIGKILLs its own process group with `shard` half written."""
    proc = subprocess.run(command(out, "--workers", str(workers)), cwd=ROOT, start_new_session=True,
                          env={**os.environ, "SSL_TEST_KILL_AT": f"shard:{shard}"}, capture_output=True, timeout=HANG_S)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert list(out.glob(f"*/{shard}.tmp-*")), "the hook fires after the temporary file is written"


def test_sigkill_mid_run_then_rerun_is_bit_identical(clean, tmp_path):
    out = tmp_path / "shards"
    for shard, workers in (("train-000002.tar", 2), ("train-000011.tar", 2), ("eval-000001.tar", 1)):
        killed_at(out, shard, workers)
        # Whatever carries a finished name is whole: every .tar and sidecar equals the clean run's bytes.
        present = files(out)
        for name, data in present.items():
            if not name.endswith("manifest.json"):
                assert data == clean[name], f"{name} looks finished but differs from a clean run"
        assert f"{shard.split('-')[0]}/{shard}" not in present
        assert len(present) < len(clean)
        assert verify(out).returncode != 0  # a killed run is never taken for a finished one
    run(out, "--workers", "2")
    assert verify(out).returncode == 0
    assert files(out) == clean
    assert not list(out.rglob("*.tmp-*"))  # the dead writers' leftovers are gone


def test_two_ranks_at_once_merge_into_one_manifest(clean, tmp_path):
    out = tmp_path / "shards"
    # One rank from flags, the other from SLURM array variables, both in the same split folders at once.
    procs = [subprocess.Popen(command(out, "--workers", "1", "--rank", "0", "--world-size", "2"), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
             subprocess.Popen(command(out, "--workers", "1"), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"})]
    for proc in procs:
        _, stderr = proc.communicate(timeout=HANG_S)
        assert proc.returncode == 0, stderr
    manifest = json.loads((out / "train" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["present_count"] == 240
    assert [s["shard"] for s in manifest["shards"]] == list(range(30))
    assert verify(out).returncode == 0
    assert files(out) == clean  # nothing overwritten by the other rank, manifests included


def test_truncated_and_flipped_shards_are_named_by_verify(clean, tmp_path):
    out = tmp_path / "shards"
    for name, data in clean.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    assert verify(out).returncode == 0
    truncated = out / "train" / "train-000004.tar"
    os.truncate(truncated, truncated.stat().st_size // 2)
    result = verify(out)
    assert result.returncode == 1 and "train-000004.tar" in result.stderr
    truncated.write_bytes(clean["train/train-000004.tar"])
    flipped = out / "eval" / "eval-000002.tar"
    with open(flipped, "r+b") as handle:
        handle.seek(2048)
        byte = handle.read(1)
        handle.seek(2048)
        handle.write(bytes([byte[0] ^ 0x80]))
    result = verify(out)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {flipped}: sha256 differs from the manifest (corrupted)"
    # And a rerun of the writer repairs it.
    run(out, "--workers", "1")
    assert files(out) == clean
