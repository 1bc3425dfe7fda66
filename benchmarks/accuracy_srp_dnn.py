"""SRP-DNN (Yang, Liu and Li, ICASSP 2022; github.com/BingYang-20/SRP-DNN, MIT) as an optional learned baseline of
the accuracy benchmark, run through its own code from a local checkout (never part of this project)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from accuracy_sets import BenchError


def srp_dnn_methods(checkout: str | None) -> tuple[dict[str, Callable[[np.ndarray, float], list[dict[str, Any]]]],
                                                   str | None]:
    """--srp-dnn value -> ({label: waves [N, 2, T], spacing -> detections}, a note for the report); ({}, None)
    without a checkout."""
    if checkout is None:
        return {}, None
    if not (Path(checkout) / "code" / "ModelSRPDNN.py").is_file():
        raise BenchError(f"--srp-dnn {checkout}: not a checkout of BingYang-20/SRP-DNN (no code/ModelSRPDNN.py)")
    raise BenchError(f"--srp-dnn {checkout}: running SRP-DNN is not implemented yet")
