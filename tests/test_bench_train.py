"""benchmarks/bench_train.py: the side-by-side variant a speed-up is measured against."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_train import parse_variant  # noqa: E402


def test_a_variant_names_precision_compilation_threads_and_config_overrides():
    assert parse_variant("bf16") == ([], True, False, None)
    assert parse_variant("compile; threads=1 ;model.dim=96;;speech.clip_seconds=1.0") == (
        ["model.dim=96", "speech.clip_seconds=1.0"], False, True, 1)
