"""Signal-processing helpers shared by the simulator and the training side (both import `shards`, never each other)."""
from __future__ import annotations

import math

# FFT sizes used: 2^a * {1, 9/8, 5/4, 3/2, 15/8}, all fast, at most 25% above the length needed.
_SIZE_FACTORS = (8, 9, 10, 12, 15)


def fft_size(minimum: int) -> int:
    """-> the smallest size 2^a * q / 8 (q in 8, 9, 10, 12, 15) that is >= minimum."""
    best = 1 << max(3, math.ceil(math.log2(max(minimum, 1))))
    for q in _SIZE_FACTORS:
        scale = 1 << max(0, math.ceil(math.log2(max(minimum * 8 / q, 1))))
        if q * scale % 8 == 0 and q * scale // 8 >= minimum:
            best = min(best, q * scale // 8)
    return best
