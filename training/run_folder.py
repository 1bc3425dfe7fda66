"""A run folder has one owner: a new run never lands on an old one, and one trainer writes it at a time.

`claim_run_folder` runs on the main rank after every check of the config and data passed and before a model is
built: it refuses a folder that already holds a run unless the user resumes it (`--resume`) or replaces it
(`--overwrite`, which removes only the files a run writes), checks that the folder can be written (one line for a
read-only or full disk), and takes `.lock` (flock) for the life of the process, so a second trainer on the same
folder is refused in one line. The kernel drops the lock when the process ends, however it ends.
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path
from typing import TextIO

LOCK = ".lock"
# What a run writes into its folder (training.runlog, training.checkpoint, training.train, the evaluator).
RUN_FILES = ("config.yaml", "metrics.jsonl", "model.safetensors")
RUN_FOLDERS = ("states", "tb", "ranks", "eval")


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked; one line naming it and what to do."""


def run_contents(run_dir: Path) -> list[str]:
    """The names of a run's files present in `run_dir` (empty: no run there)."""
    return [name for name in (*RUN_FILES, *RUN_FOLDERS) if (run_dir / name).exists()]


def remove_run(run_dir: Path, names: list[str]) -> None:
    """--overwrite: remove the old run's files and folders by name; nothing else in the folder is touched."""
    for name in names:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def lock_run_folder(run_dir: Path) -> TextIO:
    """-> the open, exclusively locked `.lock` (keep it open while writing); RunFolderError when another process
    holds it or the folder cannot be written."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / LOCK, "a+")
    except OSError as err:
        raise RunFolderError(f"run.dir {run_dir}: cannot write there ({err.strerror or err}); choose a writable "
                             f"--run-dir") from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise RunFolderError(f"run.dir {run_dir}: another trainer is writing this run folder (pid {owner}, holding "
                             f"{run_dir / LOCK}); wait for it or use another --run-dir") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        os.fsync(handle.fileno())
    except OSError as err:
        handle.close()
        raise RunFolderError(f"run.dir {run_dir}: cannot write there ({describe(err)})") from None
    return handle


def describe(err: OSError) -> str:
    """An OSError -> its reason in words, e.g. 'No space left on device'."""
    return err.strerror or os.strerror(err.errno or errno.EIO)


def claim_run_folder(run_dir: str | Path, resume: bool, overwrite: bool) -> TextIO:
    """Check and lock the run folder for this run -> the lock's handle (hold it until the run ends).

    A new run (no --resume) refuses a folder holding a run's files, unless `overwrite`, which removes them after
    the lock is taken."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"run.dir {run_dir}: is a file, not a folder")
    present = run_contents(run_dir) if run_dir.is_dir() else []
    if present and not resume and not overwrite:
        raise RunFolderError(f"run.dir {run_dir}: already holds a run ({', '.join(present)}); continue it with "
                             f"--resume, choose another --run-dir, or pass --overwrite to replace it")
    handle = lock_run_folder(run_dir)
    if present and overwrite and not resume:
        remove_run(run_dir, present)
    return handle
