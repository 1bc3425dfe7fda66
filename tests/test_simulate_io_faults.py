"""`python -m simulate` where the output cannot be written (issue 20): --out is a file, a read-only file
system, a full disk. One line each, a non-zero exit, no partial file left, finished shards still valid."""
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

import shards.files
from shards.files import shard_is_current
from simulate.cli import main
from simulate.verify import verify

ROOT = Path(__file__).parents[1]
ARGS = ["--splits", "train=6,eval=2", "--workers", "1", "--no-progress", "shard_size=2", "rt60_range=[0.1,0.2]",
        "image_count_range=[16,32]"]


def test_out_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    for out in (tmp_path / "taken", tmp_path / "taken" / "below"):
        run = subprocess.run([sys.executable, "-m", "simulate", "--out", str(out), *ARGS], capture_output=True,
                             text=True, cwd=ROOT)
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1 and "is a file, not a folder" in lines[0], run.stderr
    assert (tmp_path / "taken").read_text() == "not a folder"


@pytest.mark.parametrize("code, after, words", [(errno.ENOSPC, 8, "No space left on device"),
                                               (errno.EROFS, 0, "Read-only file system")])
def test_a_full_disk_or_read_only_folder_is_one_line_and_finished_shards_stay_valid(code, after, words, tmp_path,
                                                                                     monkeypatch, capsys):
    """Every write from the `after`-th on fails as the kernel would fail it (at fsync, the data already half out)."""
    real_fsync, calls = os.fsync, []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) > after:
            raise OSError(code, os.strerror(code))
        real_fsync(fd)

    out = tmp_path / "out"
    monkeypatch.setattr(shards.files.os, "fsync", failing_fsync)
    assert main(["--out", str(out), *ARGS]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0] and "rerun" in lines[0], lines
    assert not list(out.rglob("*.tmp-*"))  # nothing half-written is left under a temporary name
    finished = [p for p in out.rglob("*.tar") if (p.with_suffix(".json")).is_file()]
    assert (len(finished) >= 1) if after else not finished  # each file costs two fsyncs (it, then its folder)
    for shard in finished:
        assert shard_is_current(shard, {}) is not None
    monkeypatch.setattr(shards.files.os, "fsync", real_fsync)
    assert main(["--out", str(out), *ARGS]) == 0  # space freed: the rerun finishes the set
    assert verify(out)[0] == []
