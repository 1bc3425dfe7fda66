"""Not a benchmark: the shard folder bench_pipeline and bench_train read (the given one, or a small simulated one)."""
from __future__ import annotations

import tempfile

from simulate import generate_dataset


def shards_or_simulated(path: str | None) -> tuple[str, tempfile.TemporaryDirectory | None]:
    """--shards value -> (shard root, the temporary folder to keep alive or None); simulates 64+8 scenes if None."""
    if path:
        return path, None
    tmp = tempfile.TemporaryDirectory()
    generate_dataset(tmp.name, splits={"train": 64, "eval": 8}, overrides=("shard_size=8",))
    return tmp.name, tmp
