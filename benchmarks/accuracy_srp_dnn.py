"""SRP-DNN (Yang, Liu and Li, ICASSP 2022; github.com/BingYang-20/SRP-DNN, MIT) as an optional learned baseline of
the accuracy benchmark, run through its own code from a local checkout (never part of this project).

Its network (code/ModelSRPDNN.py CRNN) and learner (code/LearnerSRPDNN.py: STFT 512/256, online normalization,
per-pair magnitude/phase input, direct-path IPD templates for the array given, iterative detection and
localization, unknown number of sources, at most 2) run unchanged on our waves with our pair's geometry. What is
ours: the checkpoint is read with torch.load(weights_only=True) (their resume_checkpoint unpickles freely), and
their per-frame answers (about 12 frames per 3 s clip) become per-clip detections: every frame's active slot
(VAD > their 0.3 threshold) votes for its lateral angle, and the vote peaks (1-degree grid, +-5 degree mass,
>= 10 degrees apart) that hold at least a quarter of the frames are the clip's talkers (two-slot sets: the two
strongest peaks).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from accuracy_sets import BenchError, SR
from shards.array import SOUND_SPEED

CHECKPOINT = "exp/00000002/best_model.tar"  # the checkpoint the SRP-DNN README names as pretrained
VAD_THRESHOLD = 0.3  # their getMetric's prediction threshold (vad_TH[1])
MIN_FRAME_SHARE = 0.25
PEAK_HALF_WIDTH_DEG = 5
MAX_SOURCES = 2  # the checkpoint's CRNN(max_num_sources=2)


def load_learner(checkout: Path, mic_spacing: float) -> Any:
    """checkout, pair spacing (m) -> their SourceTrackingFromSTFTLearner with the pretrained CRNN on the CPU, set up
    for a pair at x = -d/2 (channel 0) and +d/2 (channel 1), unknown number of sources (IDL)."""
    code = str(checkout / "code")
    if code not in sys.path:
        sys.path.insert(0, code)
    import LearnerSRPDNN  # noqa: PLC0415  (their code, importable only from the checkout)
    import ModelSRPDNN  # noqa: PLC0415

    net = ModelSRPDNN.CRNN(max_num_sources=MAX_SOURCES)
    state = torch.load(checkout / CHECKPOINT, map_location="cpu", weights_only=True)
    net.load_state_dict({key.replace("module.", ""): value for key, value in state["model"].items()})
    mics = np.array([[-mic_spacing / 2, 0.0, 0.0], [mic_spacing / 2, 0.0, 0.0]])
    learner = LearnerSRPDNN.SourceTrackingFromSTFTLearner(
        net, win_len=512, win_shift_ratio=0.5, nfft=512, fre_used_ratio=1, nele=37, nazi=73, rn=mics, fs=SR,
        ch_mode="MM", tar_useVAD=True, localize_mode=["IDL", "unkNum", MAX_SOURCES], c=SOUND_SPEED)
    learner.cpu()
    learner.model.eval()
    return learner


def frame_laterals(pred: dict[str, Any]) -> list[np.ndarray]:
    """their predict output {'doa': [B, T, 2 (polar, azimuth) rad, S], 'vad_sources': [B, T, S]} -> per clip the
    lateral angles (degrees from the +x axis) of every active frame-slot."""
    doa = np.asarray(pred["doa"].cpu() if torch.is_tensor(pred["doa"]) else pred["doa"], float)
    vad = np.asarray(pred["vad_sources"].cpu() if torch.is_tensor(pred["vad_sources"]) else pred["vad_sources"], float)
    x = np.sin(doa[:, :, 0]) * np.cos(doa[:, :, 1])  # their direction (sin t cos p, sin t sin p, cos t), x part
    lateral = np.degrees(np.arccos(np.clip(x, -1.0, 1.0)))  # [B, T, S]
    return [lateral[b][vad[b] > VAD_THRESHOLD] for b in range(len(doa))]


def vote_peaks(angles: np.ndarray, frames: int) -> list[tuple[float, float]]:
    """lateral angles voted by a clip's frames, frame count -> up to MAX_SOURCES+1 (angle, share of frames) peaks,
    strongest first: greedy maxima of the +-5 degree vote mass, >= 10 degrees apart, angle = vote centroid."""
    votes = np.bincount(np.clip(np.round(angles).astype(int), 0, 180), minlength=181).astype(float)
    kernel = np.ones(2 * PEAK_HALF_WIDTH_DEG + 1)
    mass = np.convolve(votes, kernel, mode="same")
    grid = np.arange(181.0)
    peaks = []
    for _ in range(MAX_SOURCES + 1):
        best = int(np.argmax(mass))
        if mass[best] <= 0:
            break
        near = np.abs(grid - best) <= PEAK_HALF_WIDTH_DEG
        peaks.append((float(np.sum(grid[near] * votes[near]) / max(votes[near].sum(), 1e-12)), mass[best] / frames))
        mass[np.abs(grid - best) <= 2 * PEAK_HALF_WIDTH_DEG] = 0.0
    return peaks


def clip_detections(angles: np.ndarray, frames: int) -> dict[str, Any]:
    """one clip's frame votes -> {'angles_deg': the peaks holding >= MIN_FRAME_SHARE of the frames, sorted, 'count',
    'ranked': every peak's angle, strongest first}."""
    peaks = vote_peaks(angles, frames)
    kept = sorted(a for a, share in peaks if share >= MIN_FRAME_SHARE)
    return {"angles_deg": kept, "count": len(kept), "ranked": [a for a, _ in peaks]}


def srp_dnn_detect(checkout: Path, waves: np.ndarray, mic_spacing: float, chunk: int = 8) -> list[dict[str, Any]]:
    """waves [N, 2, T], pair spacing -> per clip detections through SRP-DNN's learner (clip_detections)."""
    learner = load_learner(checkout, mic_spacing)
    out = []
    for start in range(0, len(waves), chunk):
        batch = torch.from_numpy(np.ascontiguousarray(waves[start:start + chunk].transpose(0, 2, 1)))  # [B, T, ch]
        with torch.no_grad():  # their predict_batch without ground truth: preprocess, network, IPD -> DOA
            (features,) = learner.data_preprocess(batch.float())
            pred, _ = learner.predgt2DOA(pred_batch=learner.model(features))
        frames = pred["vad_sources"].shape[1]
        out.extend(clip_detections(angles, frames) for angles in frame_laterals(pred))
    return out


def srp_dnn_methods(checkout: str | None) -> tuple[dict[str, Callable[[np.ndarray, float], list[dict[str, Any]]]],
                                                   str | None]:
    """--srp-dnn value -> ({label: (waves [N, 2, T], spacing) -> detections}, a note for the report); ({}, None)
    without a checkout. The pair sets take the two strongest peaks ('ranked'); the count set the thresholded ones."""
    if checkout is None:
        return {}, None
    root = Path(checkout)
    for needed in ("code/ModelSRPDNN.py", "code/LearnerSRPDNN.py", CHECKPOINT):
        if not (root / needed).is_file():
            raise BenchError(f"--srp-dnn {checkout}: not a checkout of BingYang-20/SRP-DNN (no {needed})")
    try:
        load_learner(root, 0.1)
    except Exception as err:  # their code: any import or load failure is reported in one line
        raise BenchError(f"--srp-dnn {checkout}: its code does not run here: {type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}") from None

    def method(waves: np.ndarray, spacing: float) -> list[dict[str, Any]]:
        return srp_dnn_detect(root, waves, spacing)

    note = (f"SRP-DNN from {root} ({CHECKPOINT}, loaded with weights_only=True), run zero-shot through its own "
            f"learner on the same waves; per-clip answers from its per-frame outputs (benchmarks/accuracy_srp_dnn.py)")
    return {"SRP-DNN (pretrained, zero-shot)": method}, note
