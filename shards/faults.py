"""Injected faults: named points in production code where a fault test may crash the process.

`fault_point(name)` does nothing unless the environment variable SSL_TEST_KILL_AT names that point; then it
SIGKILLs the process group there, so a test crashes at a chosen place instead of racing a timer:
`SSL_TEST_KILL_AT=shard:train-000007.tar` stops `python -m simulate` with that shard half written;
`SSL_TEST_KILL_AT=step:25` (or `save:20`) stops training after that optimizer step (inside that state's save).
"""
from __future__ import annotations

import os
import signal

FAULT_ENV = "SSL_TEST_KILL_AT"


def fault_point(name: str) -> None:
    """A point a fault test may name: SIGKILL this process group when FAULT_ENV equals `name`, else nothing."""
    if os.environ.get(FAULT_ENV) == name:
        os.killpg(os.getpgid(0), signal.SIGKILL)
