"""Checks across config sections, before any work: the clip fits the model, one sample rate, and the data
path fits in memory (a cheap estimate of its largest tensors; the model's own activations are not counted)."""
from __future__ import annotations

import os

import torch

from configs import ConfigError
from shards.dsp import fft_size
from training.config import TrainConfig

MICS = 2  # the model takes two microphones (training.data.sources.check_setup refuses other shards)
FLOAT32, COMPLEX64 = 4, 8


def data_path_bytes(cfg: TrainConfig) -> dict[str, int]:
    """-> the bytes of the data path's largest tensors: {'reservoirs' (device), 'batch mixing' (device, one
    micro-batch's rfft of speech and RIRs), 'eval set' (host, the whole fixed set mixed at once)}."""
    sources, clip, rir_len = cfg.model.num_slots, cfg.clip_samples, cfg.data.max_rir_len
    bins = fft_size(clip + rir_len - 1) // 2 + 1
    reservoirs = (cfg.data.rir_reservoir * MICS * sources * rir_len + cfg.speech.reservoir * clip) * FLOAT32
    # Spectra of speech [B, S, bins], RIRs [B, M, S, bins] and their product, plus the wave [B, M, T].
    mixing = cfg.run.batch_size * ((1 + 2 * MICS) * sources * bins * COMPLEX64 + MICS * clip * FLOAT32)
    eval_set = cfg.eval.num_samples * (sources + MICS) * clip * FLOAT32
    return {"reservoirs": reservoirs, "batch mixing": mixing, "eval set": eval_set}


def memory_limits() -> tuple[int, int | None]:
    """-> (host RAM bytes, the first CUDA device's bytes or None without CUDA)."""
    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    device = torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else None
    return host, device


def check_memory(cfg: TrainConfig, host: int, device: int | None) -> None:
    """ConfigError in one line when the data path alone cannot fit: the device part in the device's memory
    (the host's without CUDA), the eval set in host RAM."""
    need = data_path_bytes(cfg)
    on_device = need["reservoirs"] + need["batch mixing"]
    where, limit = ("the GPU", device) if device is not None else ("host RAM", host)
    gib = 2.0 ** 30
    if on_device > limit:
        raise ConfigError(f"run.batch_size={cfg.run.batch_size}, data.rir_reservoir={cfg.data.rir_reservoir}, "
                          f"data.max_rir_len={cfg.data.max_rir_len}, speech.reservoir={cfg.speech.reservoir}: the data "
                          f"path alone needs ~{on_device / gib:.1f} GiB (reservoirs {need['reservoirs'] / gib:.1f}, "
                          f"one batch's mixing {need['batch mixing'] / gib:.1f}), more than {where}'s "
                          f"{limit / gib:.1f} GiB; lower them")
    if need["eval set"] > host:
        raise ConfigError(f"eval.num_samples={cfg.eval.num_samples}: the fixed eval set needs ~"
                          f"{need['eval set'] / gib:.1f} GiB of host RAM, more than its {host / gib:.1f} GiB; lower it")


def check_run_config(cfg: TrainConfig) -> None:
    """The cross-section checks of a resolved config (each section's own checks ran when it was loaded)."""
    if cfg.clip_samples < cfg.model.min_samples():
        raise ConfigError(f"speech.clip_seconds: {cfg.speech.clip_seconds} s is shorter than the model's "
                          f"minimum input ({cfg.model.min_samples()} samples at {cfg.sr} Hz)")
    check_memory(cfg, *memory_limits())
