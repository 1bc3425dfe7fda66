"""The one place that knows the model's input and output: batches of windows in, WindowResults out; a recording's
WindowResults in, its LocalizationResult out.

A window names the talkers of its held slots (a counting model: the leading slots with existence > decoding.existence,
a slot whose delay copies a stronger one's dropped; a two-talker model always names two). The recording's talkers:
for a model that counts, the clusters of the windows' talkers heard in enough of the windows (ssl_model/talkers.py;
each window's vote its probability or, with decoding.track_support, that and its track's support together);
for a two-talker model, the two angles of the windows' averaged posteriors. `probabilities` mean the same for both
(ssl_model/results.py). With `num_talkers=K` the recording reports exactly K talkers, the strongest K directions
the windows named (or, when they named fewer, heard among their other slots).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ssl_model.export import Posteriors
from ssl_model.inputs import LocalizeError
from ssl_model.levels import window_is_silent
from ssl_model.loading import LocalizerSpec
from ssl_model.mirror import average_with_mirrored
from ssl_model.results import FrameResult, LocalizationResult, WindowResult
from ssl_model.talkers import (Decoding, TrackGrid, cluster_detections, delay_samples, distinct, posterior_reach,
                               track_peaks, track_support)
from ssl_model.targets import decode, decode_posteriors, decode_slot_posteriors

NEAR_CLASSES = 1  # a two-talker model's window probability: its slot posterior's mass within this many classes


class WindowDecoder:
    """A model's network (ssl_model.export.Posteriors) on a device, its spec and its decoding thresholds: windows ->
    WindowResults, and a recording's WindowResults -> its LocalizationResult."""

    def __init__(self, model: torch.nn.Module, spec: LocalizerSpec, device: torch.device, decoding: Decoding,
                 source: str = "in memory"):
        self.network = Posteriors(model, spec.normalize)  # what ssl_model.export writes as a graph
        self.spec, self.device, self.decoding, self.source = spec, device, decoding, source

    @property
    def counts(self) -> bool:
        """Whether the model says how many talk (a count head), rather than always naming every slot."""
        return bool(self.spec.model.count_head)

    @property
    def tracks(self) -> bool:
        """Whether the model has a frame head (a per-step track: `frames`)."""
        return bool(self.spec.model.frame_head)

    @property
    def step_s(self) -> float:
        """Seconds per track step (models with a frame head)."""
        config = self.spec.model
        return config.frames_per_patch * config.frame_step_tokens * config.hop / self.spec.sr

    def check_outputs(self, outputs: tuple[torch.Tensor, ...], name: str) -> None:
        """The network's (posteriors, existence, track) -> LocalizeError naming `name` unless all are finite."""
        if not all(bool(torch.isfinite(t).all()) for t in outputs):
            raise LocalizeError(f"{name}: the model ({self.source}) gave NaN or infinite outputs (broken weights?): "
                                f"no result")

    @torch.no_grad()
    def window_results(self, batch: list[tuple[int, torch.Tensor, int]], spacing: float, name: str
                       ) -> list[WindowResult]:
        """[(start, window [2, clip_samples], its own samples)] -> their WindowResults: the silent ones
        (window_is_silent, on the window's own samples) without the model, the others in one model pass."""
        silent = [window_is_silent(piece[:, :length]) for _, piece, length in batch]
        heard = [item for item, quiet in zip(batch, silent) if not quiet]
        decoded = iter(self._decode_windows(heard, spacing, name) if heard else [])
        return [self._silent_window(start, length) if quiet else next(decoded)
                for (start, _, length), quiet in zip(batch, silent)]

    def _silent_window(self, start: int, length: int) -> WindowResult:
        """A window with no usable signal: no talkers, no slots, no track steps."""
        sr, classes = self.spec.sr, self.spec.model.num_classes
        return WindowResult(
            start_s=start / sr, end_s=(start + length) / sr, count=0,
            angles_deg=np.zeros(0), classes=np.zeros(0, np.int64), probabilities=np.zeros(0, np.float32),
            posteriors=np.zeros((0, classes), np.float32), existence=np.zeros(0, np.float32),
            slot_angles_deg=np.zeros(0), frames=(), activity=np.zeros((0, classes), np.float32), silent=True,
            tracked=self.tracks)

    def _decode_windows(self, batch: list[tuple[int, torch.Tensor, int]], spacing: float, name: str
                        ) -> list[WindowResult]:
        """[(start, window [2, clip_samples], length)] -> their WindowResults (one model pass); LocalizeError naming
        `name` for non-finite model outputs."""
        sr = self.spec.sr
        windows = torch.stack([piece for _, piece, _ in batch]).to(self.device)
        posteriors, exist, track = self._outputs(windows, spacing, name)
        count, angles, posteriors, exist = decode_slot_posteriors(posteriors, exist, self.decoding.existence)
        if self.counts:
            count, angles, posteriors, exist = self._drop_copies(count, angles, posteriors, exist, spacing)
        classes, slot_angles = decode(posteriors.clamp_min(1e-12).log())
        near = near_mass(posteriors, classes, NEAR_CLASSES)
        sure = exist if self.counts else near
        bin_deg = 180.0 / posteriors.shape[-1]
        out = []
        for i, (start, _, length) in enumerate(batch):
            k = int(count[i])
            activity = track[i].cpu().numpy()
            steps = track_peaks(activity, bin_deg, max_peaks=exist.shape[1], delay_of=self._delay_of(spacing),
                                resolve_samples=self.decoding.resolve_samples)
            frames = tuple(FrameResult(start / sr + (step + 0.5) * self.step_s, tuple(a)) for step, a in enumerate(steps))
            out.append(WindowResult(
                start_s=start / sr, end_s=(start + length) / sr, count=k,
                angles_deg=angles[i, :k].double().cpu().numpy(), classes=classes[i, :k].cpu().numpy(),
                probabilities=sure[i, :k].cpu().numpy(), posteriors=posteriors[i].cpu().numpy(),
                existence=exist[i].cpu().numpy(), slot_angles_deg=slot_angles[i].double().cpu().numpy(), frames=frames,
                activity=activity, tracked=self.tracks))
        return out

    def _outputs(self, windows: torch.Tensor, spacing: float, name: str
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """windows [B, 2, clip_samples] -> the network's (posteriors [B, S, C], existence [B, S], track [B, steps, C]);
        with decoding.mirror, averaged with the pass over the channel-swapped windows (ssl_model/mirror.py)."""
        steering = torch.tensor(spacing, device=self.device)  # one steering
        if not self.decoding.mirror:
            outputs = self.network(windows, steering)
            self.check_outputs(outputs, name)
            return outputs
        both = self.network(torch.cat((windows, windows.flip(1))), steering)  # one batch: the windows, then swapped
        self.check_outputs(both, name)
        plain, swapped = zip(*(t.chunk(2) for t in both))
        return average_with_mirrored(plain, swapped, self.decoding.existence)

    def _delay_of(self, spacing: float) -> Callable[[np.ndarray], np.ndarray]:
        """-> angles [...] (degrees) -> the delays [...] in samples at the model's rate that the pair hears."""
        return lambda angles: delay_samples(angles, spacing, self.spec.sr, self.spec.model.sound_speed)

    def _drop_copies(self, count: torch.Tensor, angles: torch.Tensor, posteriors: torch.Tensor, exist: torch.Tensor,
                     spacing: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """decode_slot_posteriors' (count [B], angles [B, S], posteriors [B, S, C], exist [B, S]) -> the same with the
        held slots that copy a stronger one (talkers.distinct: within resolve_samples of delay) moved behind the held
        ones and no longer counted."""
        count, angles, posteriors, exist = count.clone(), angles.clone(), posteriors.clone(), exist.clone()
        delay_of = self._delay_of(spacing)
        for i in range(count.shape[0]):
            k = int(count[i])
            if k < 2:
                continue
            kept = distinct(delay_of(angles[i, :k].double().cpu().numpy()), exist[i, :k].cpu().numpy(),
                            self.decoding.resolve_samples)
            if len(kept) == k:
                continue
            rest = [j for j in range(angles.shape[1]) if j not in set(kept.tolist())]
            order = torch.as_tensor(kept.tolist() + rest, device=angles.device)
            angles[i], posteriors[i], exist[i] = angles[i, order], posteriors[i, order], exist[i, order]
            angles[i, len(kept):] = float("nan")
            count[i] = len(kept)
        return count, angles, posteriors, exist

    def _talkers(self, heard: list[WindowResult], posteriors: np.ndarray, spacing: float, num_talkers: int | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The windows with signal and their averaged posteriors [S, C] -> the recording's (angles_deg,
        probabilities, candidates_deg): module docstring; nobody when no window had signal."""
        if not heard:
            return np.zeros(0), np.zeros(0, np.float32), np.zeros(0)
        if not self.counts:
            _, ang, _ = decode_posteriors(torch.from_numpy(posteriors)[None])
            angles = ang[0].double().numpy()
            shares = slot_shares(heard, angles, self.decoding.merge_deg)
            if num_talkers is not None:  # the K slots the windows heard most, ascending
                keep = np.sort(np.argsort(-shares, kind="stable")[:num_talkers])
                return angles[keep], shares[keep], angles
            return angles, shares, angles
        most = posteriors.shape[0] if num_talkers is None else num_talkers
        talkers = self._clusters(heard, spacing, min_share=self.decoding.min_share if num_talkers is None else 0.0,
                                 max_talkers=most, every_slot=False)
        angles, shares = talkers.angles_deg, talkers.shares
        if num_talkers is not None and len(angles) < num_talkers:  # fewer named: the strongest of the other slots
            others = self._clusters(heard, spacing, min_share=0.0, max_talkers=posteriors.shape[0], every_slot=True)
            for k in np.argsort(-others.shares, kind="stable"):
                if len(angles) < num_talkers and np.all(np.abs(angles - others.angles_deg[k]) > self.decoding.merge_deg):
                    angles, shares = np.append(angles, others.angles_deg[k]), np.append(shares, others.shares[k])
            angles, shares = fill_from_posteriors(angles, shares, posteriors, num_talkers, self.decoding.merge_deg)
        return angles, shares.astype(np.float32), talkers.candidates_deg

    def _clusters(self, heard: list[WindowResult], spacing: float, min_share: float, max_talkers: int,
                  every_slot: bool):
        """The windows' talkers (or, `every_slot`, all their slots weighted by existence) -> talkers.Talkers."""
        angles = np.concatenate([w.slot_angles_deg if every_slot else w.angles_deg for w in heard])
        level = self.decoding.reach_level
        reaches = np.asarray([posterior_reach(w.posteriors[j], float(a), 180.0 / w.posteriors.shape[-1], level)
                              for w in heard
                              for j, a in enumerate(w.slot_angles_deg if every_slot else w.angles_deg)])
        probs = np.concatenate([w.existence if every_slot else self._votes(w) for w in heard])
        windows = np.concatenate([np.full(len(w.slot_angles_deg) if every_slot else w.count, i)
                                  for i, w in enumerate(heard)])
        return cluster_detections(  # shares of the windows with signal: a pause does not dilute a talker
            angles, probs, windows, len(heard), merge_deg=self.decoding.merge_deg, min_share=min_share,
            max_talkers=max_talkers, one_per_window=self.decoding.one_per_window,
            delays=self._delay_of(spacing)(angles), resolve_samples=self.decoding.resolve_samples, reaches=reaches)

    def _votes(self, window: WindowResult) -> np.ndarray:
        """A window's talkers -> [count] its votes for them in the recording's shares: their probabilities or, with
        decoding.track_support and a frame head, the geometric mean of each and the track's support within half of
        merge_deg (talkers.track_support)."""
        if not (self.decoding.track_support and self.tracks):
            return window.probabilities
        support = track_support(window.activity, window.angles_deg, self.decoding.merge_deg / 2)
        return np.sqrt(window.probabilities * support).astype(np.float32)

    def result(self, windows: list[WindowResult], samples_in: int, sample_rate_in: int, spacing: float,
               num_talkers: int | None = None, warnings: tuple[str, ...] = ()) -> LocalizationResult:
        """A recording's WindowResults -> its LocalizationResult (module docstring: how windows become talkers);
        silent windows count in the spectrum (as windows without talkers), not in the posteriors or the talkers."""
        heard = [w for w in windows if not w.silent]
        config = self.spec.model
        posteriors = (np.mean([w.posteriors for w in heard], axis=0) if heard
                      else np.zeros((config.num_slots, config.num_classes), np.float32))  # [S, C]
        num_classes = posteriors.shape[-1]
        bin_deg = 180.0 / num_classes
        spectrum = (np.mean([w.posteriors[:w.count].sum(axis=0) for w in windows], axis=0) if windows
                    else np.zeros(num_classes))
        angles, probabilities, candidates = self._talkers(heard, posteriors, spacing, num_talkers)
        classes = np.clip(np.floor(angles / bin_deg), 0, num_classes - 1).astype(np.int64)
        grid = TrackGrid(self.step_s, num_classes)
        for w in windows:
            grid.add(w.start_s, w.activity)
        frames = tuple(FrameResult((g + 0.5) * self.step_s, tuple(a))
                       for g, a in enumerate(track_peaks(grid.average(), bin_deg, max_peaks=posteriors.shape[0],
                                                         delay_of=self._delay_of(spacing),
                                                         resolve_samples=self.decoding.resolve_samples)))
        return LocalizationResult(
            count=len(angles), angles_deg=angles, classes=classes, probabilities=probabilities,
            candidates_deg=candidates, posteriors=posteriors.astype(np.float32), spectrum=spectrum.astype(np.float32),
            windows=tuple(windows), frames=frames, target=self.spec.target, mic_spacing=spacing,
            sample_rate_in=sample_rate_in, sample_rate_model=self.spec.sr, duration_s=samples_in / sample_rate_in,
            window_s=self.spec.clip_samples / self.spec.sr, tracked=self.tracks, count_given=num_talkers is not None,
            warnings=tuple(warnings))


def near_mass(posteriors: torch.Tensor, classes: torch.Tensor, reach: int) -> torch.Tensor:
    """posteriors [B, S, C], decoded classes [B, S] -> [B, S]: each slot's posterior mass within `reach` classes of
    its class (how sure the model is of the direction, where a single class's value splits it among neighbours)."""
    offsets = torch.arange(-reach, reach + 1, device=classes.device)
    near = (classes[..., None] + offsets).clamp(0, posteriors.shape[-1] - 1)  # [B, S, 2 reach + 1]
    inside = (classes[..., None] + offsets >= 0) & (classes[..., None] + offsets < posteriors.shape[-1])
    return (posteriors.gather(-1, near) * inside).sum(-1)


def fill_from_posteriors(angles: np.ndarray, shares: np.ndarray, posteriors: np.ndarray, count: int,
                         merge_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """A recording's talkers (angles [K], shares [K]) fewer than `count` -> `count` of them, ascending: the classes of
    the averaged slot posteriors [S, C] summed over slots, strongest first, farther than merge_deg from every talker
    kept, local maxima first, each with share 0 (no window heard it as a talker): the next peaks of the spatial
    spectrum."""
    bin_deg = 180.0 / posteriors.shape[-1]
    centres = (np.arange(posteriors.shape[-1]) + 0.5) * bin_deg
    spectrum = posteriors.sum(axis=0)
    padded = np.pad(spectrum, 1, constant_values=-1.0)
    peak = (spectrum >= padded[:-2]) & (spectrum >= padded[2:])  # local maxima first, then the rest
    for c in np.lexsort((-spectrum, ~peak)):
        if len(angles) >= count:
            break
        if np.all(np.abs(angles - centres[c]) > merge_deg):
            angles, shares = np.append(angles, centres[c]), np.append(shares, 0.0)
    order = np.argsort(angles, kind="stable")
    return angles[order], shares[order]


def slot_shares(heard: list[WindowResult], angles: np.ndarray, merge_deg: float) -> np.ndarray:
    """A model that names every slot: the windows with signal and the recording's slot angles [S] (ascending) ->
    [S]: per slot the share of the windows whose same slot lies within merge_deg of it, each weighted by that
    window's probability (the same meaning as a counting model's cluster shares)."""
    votes = np.zeros(len(angles))
    for w in heard:
        votes += np.where(np.abs(w.angles_deg - angles) <= merge_deg, w.probabilities, 0.0)
    return np.minimum(votes / len(heard), 1.0)
