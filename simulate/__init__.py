"""Simulated rooms for two-mic localization: scenes, batched FRA-RIR, shards, manifests, verify."""
from __future__ import annotations

__all__ = ["generate_dataset"]


def __getattr__(name: str):
    # Lazy, so `import simulate.config` stays light (no torch) while `from simulate import
    # generate_dataset` returns the real function, signature included.
    if name == "generate_dataset":
        from simulate.generate import generate_dataset

        return generate_dataset
    raise AttributeError(f"module 'simulate' has no attribute {name!r}")
