"""Checks of a weights file that its loader cannot make by itself (issue 33): bounded metadata, and tensors stored
in the dtype the model holds them in.

safetensors converts on load, so a tensor relabelled F32 -> I32 in the header (the same bytes, read as integers)
loads silently and the answers change; and its JSON metadata, parsed unbounded, can nest 100,000 deep. Both are
refused in one line naming the file, through the error type the loader raises (passed in, so this module imports
nothing of the loader's).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError, safe_open

from shards.limits import load_json

# safetensors' dtype names -> torch's
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                      "BOOL": torch.bool}


def check_metadata(path: str | Path, error: type[Exception]) -> None:
    """`error` in one line naming the file when a metadata value that is JSON nests too deep or holds numbers out
    of bounds (shards.limits.load_json); unreadable files are left to the loader, which names them."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, RuntimeError):
        return
    for key, value in metadata.items():
        if value.lstrip().startswith(("{", "[")):
            try:
                load_json(value, f"{path}: metadata {key!r}", constants=True)  # NaN/Inf: read_spec names the key
            except ValueError as err:
                raise error(str(err)) from None


def check_dtypes(path: str | Path, state: Mapping[str, torch.Tensor], error: type[Exception]) -> None:
    """`error` in one line naming the file and the first tensor whose stored dtype is not the one `state` (the
    model it was loaded into) holds it in."""
    with safe_open(str(path), framework="pt") as handle:
        for name in handle.keys():
            stored = handle.get_slice(name).get_dtype()
            want = state[name].dtype if name in state else None
            if want is not None and SAFETENSORS_DTYPES.get(stored) != want:
                raise error(f"{path}: tensor {name} is stored as {stored}, the model holds it as "
                            f"{str(want).removeprefix('torch.')}; the file was altered or is another model's")
