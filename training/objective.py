"""The training objective: direction per slot, existence per slot (how many talk), and the spatial track.

- Directions: cross-entropy of slot i against the i-th counted talker's class (slots in ascending angle order;
  soft Gaussian targets with optim.label_sigma_deg), only for slots that hold a talker. With
  optim.slot_assignment=permutation the held slots take the talkers in whichever order costs least
  (permutation-invariant training, Yu et al., ICASSP 2017): the network picks its own order (e.g. the clearest
  talker first), and slot 3 is no longer always the talker at the largest angle. A model without a count
  head is the seed's: every slot always holds one (the sum over slots of the batch-mean cross-entropy).
- Existence (count_head): binary cross-entropy of slot i's logit against "more than i talkers": an ordinal
  count, read back as the number of slots whose probability passes 0.5; weighted by optim.exist_weight (1: the mean
  over slots, a small term beside the direction term's sum over slots).
- One talker is one talker: counted talkers whose direct-path delays (d cos(theta) / c) differ by less than the
  decoder's resolution (ssl_model.talkers.RESOLVE_SAMPLES) are one talker to the pair, so they are one target
  (`merge_unresolvable`): a copy is never rewarded, and the decoder's duplicate rule is what training taught.
- Track (frame_head): per step of the model's pooled tokens, binary cross-entropy of each direction class against
  a bump of width label_sigma_deg (at least one class) around every talker active in that step; weighted by
  optim.track_weight (1/4 by default).
- Mirrored (optim.mirror_average): swapping a pair's channels mirrors every talker to 180 - theta, and the decoder's
  `decoding.mirror` averages a window's pass with its swapped pass. Trained that way, every term above scores the
  average of the two passes' probabilities (the swapped pass flipped along the direction classes; its held slots,
  which list the talkers in the opposite order, reversed; existence slot by slot), so the count is learnt for the
  averaged outputs the decoder reads, not for either pass alone.
"""
from __future__ import annotations

import math
from itertools import permutations

import torch
import torch.nn.functional as F

from ssl_model.config import ModelConfig
from ssl_model.metrics import two_slot_cross_entropy
from ssl_model.mirror import flip_classes
from ssl_model.model import SSLOutput
from ssl_model.talkers import RESOLVE_SAMPLES
from ssl_model.targets import angle_to_class, class_centers, soft_targets
from training.data.mixtures import Mixtures


def direction_loss(logits: torch.Tensor, angles: torch.Tensor, sigma_deg: float, smoothing: float,
                   permute: bool = False) -> torch.Tensor:
    """logits [B, S, C], angles [B, S] (held talkers first, NaN: empty slot) -> scalar: the mean over held slots of
    slot i's cross-entropy against talker i (or, `permute`, against the talker the least costly assignment of held
    slots to held talkers gives it), times S (so that a batch where every slot is held gives the seed's sum over
    slots)."""
    held = torch.isfinite(angles)
    if not bool(held.any()):
        return logits.sum() * 0.0
    slots, num_classes = angles.shape[1], logits.shape[-1]
    filled = torch.nan_to_num(angles, nan=0.0)
    target = soft_targets(filled, num_classes, sigma_deg) if sigma_deg > 0 else angle_to_class(filled, num_classes)
    if not permute:  # slot i against talker i: only the diagonal of the cost below
        per_item = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(0, 1), reduction="none",
                                   label_smoothing=smoothing).view(held.shape)
        return (per_item * held).sum() / held.sum() * slots
    # cost [B, slot, talker]: every slot's cross-entropy against every talker
    pairs = logits.float()[:, :, None].expand(-1, -1, slots, -1)
    aims = target[:, None].expand(-1, slots, *target.shape[1:])
    cost = F.cross_entropy(pairs.flatten(0, 2), aims.flatten(0, 2), reduction="none",
                           label_smoothing=smoothing).view(-1, slots, slots)
    totals = []
    for order in permutations(range(slots)):  # slot i takes talker order[i]; a held slot given an empty talker: none
        pick = torch.as_tensor(order, device=cost.device)
        per_slot = cost.gather(2, pick.expand(cost.shape[0], -1)[..., None]).squeeze(-1)  # [B, S]
        valid = (held[:, pick] | ~held).all(dim=1)
        totals.append(torch.where(valid, (per_slot * held).sum(dim=1), torch.full_like(per_slot[:, 0], float("inf"))))
    return torch.stack(totals, dim=1).amin(dim=1).sum() / held.sum() * slots


def merge_unresolvable(angles: torch.Tensor, spacing: torch.Tensor, sr: int, sound_speed: float,
                       resolve_samples: float = RESOLVE_SAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    """angles [B, S] (ascending, NaN: empty), spacing [B] metres -> (angles [B, S], count long [B]): runs of
    neighbouring talkers whose delays spacing cos(theta) / c * sr lie within resolve_samples of the run's first
    become one talker at the run's mean delay (angles ascending are delays descending, so neighbours suffice)."""
    delays = spacing.double()[:, None] * torch.cos(torch.deg2rad(angles.double())) / sound_speed * sr  # NaN stays
    limit = (spacing.double() / sound_speed * sr)[:, None]
    merged = torch.full_like(delays, float("nan"))
    count = torch.zeros(angles.shape[0], dtype=torch.long, device=angles.device)
    rows = torch.arange(angles.shape[0], device=angles.device)
    first = torch.full_like(delays[:, 0], float("nan"))  # the open run's first delay, its sum and size
    total = torch.zeros_like(first)
    size = torch.zeros_like(first)
    for slot in range(angles.shape[1]):
        d = delays[:, slot]
        held = torch.isfinite(d)
        joins = held & torch.isfinite(first) & ((first - d).abs() < resolve_samples)
        starts = held & ~joins
        # close the open run before a new one starts
        closing = starts & torch.isfinite(first)
        merged[rows[closing], count[closing] - 1] = (total / size.clamp_min(1))[closing]
        count = count + starts.long()
        first = torch.where(starts, d, first)
        total = torch.where(starts, d, torch.where(joins, total + d, total))
        size = torch.where(starts, torch.ones_like(size), torch.where(joins, size + 1, size))
    open_run = torch.isfinite(first)
    merged[rows[open_run], count[open_run] - 1] = (total / size.clamp_min(1))[open_run]
    cosine = (merged / limit).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cosine)).to(angles.dtype), count


def exist_targets(count: torch.Tensor, slots: int) -> torch.Tensor:
    """count long [B] -> float [B, S]: 1 for slot i when count > i."""
    return (torch.arange(slots, device=count.device)[None, :] < count[:, None]).float()


def track_targets(mix: Mixtures, steps: int, frames_per_step: int, num_classes: int, sigma_deg: float,
                  min_share: float = 1 / 3) -> torch.Tensor:
    """-> [B, steps, C] in [0, 1]: per step (frames_per_step activity frames), the max over talkers active in at least
    min_share of its frames of a Gaussian bump (peak 1) around the talker's angle."""
    activity = mix.talker_activity.float()  # [B, S, frames]
    need = steps * frames_per_step
    if activity.shape[-1] < need:
        activity = F.pad(activity, (0, need - activity.shape[-1]))
    share = activity[..., :need].unflatten(-1, (steps, frames_per_step)).mean(-1)  # [B, S, steps]
    active = share >= min_share
    centers = class_centers(torch.arange(num_classes, device=activity.device), num_classes)  # [C]
    width = max(sigma_deg, 180.0 / num_classes)
    bump = torch.exp(-0.5 * ((mix.talker_angles[..., None] - centers) / width) ** 2)  # [B, S, C]
    return (active[..., None] * bump[:, :, None, :]).amax(dim=1)  # [B, steps, C]


def frames_per_step(config: ModelConfig) -> int:
    """Activity frames (one per STFT hop) in one track step of the model."""
    return config.frames_per_patch * config.frame_step_tokens


def mirrored_slots(count: torch.Tensor, slots: int) -> torch.Tensor:
    """count long [B] -> long [B, S]: the swapped pass's slot that holds plain slot i's talker: n - 1 - i for the n
    held slots (ascending angles become descending), i itself for the empty ones."""
    i = torch.arange(slots, device=count.device)[None, :]
    n = count[:, None]
    return torch.where(i < n, n - 1 - i, i)


def mean_sigmoid_logit(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """logits a, b (same shape) -> the logit of (sigmoid(a) + sigmoid(b)) / 2, computed in log space."""
    a, b = a.float(), b.float()
    return torch.logaddexp(F.logsigmoid(a), F.logsigmoid(b)) - torch.logaddexp(F.logsigmoid(-a), F.logsigmoid(-b))


def average_mirrored(out: SSLOutput, swapped: SSLOutput, count: torch.Tensor) -> SSLOutput:
    """outputs for windows and for the same windows with their channels swapped, count long [B] (talkers after
    merge_unresolvable) -> SSLOutput in the first's angles whose logits give the two passes' mean probabilities:
    directions as log mean softmax (the swapped pass's classes flipped, its held slots reversed: mirrored_slots),
    existence slot by slot and the track step by step as logits of mean sigmoids (ssl_model.mirror at inference)."""
    order = mirrored_slots(count, out.logits.shape[1])
    log_p = F.log_softmax(out.logits.float(), dim=-1)
    log_q = flip_classes(F.log_softmax(swapped.logits.float(), dim=-1))
    log_q = log_q.gather(1, order[..., None].expand_as(log_q))
    logits = torch.logaddexp(log_p, log_q) - math.log(2.0)
    exist = mean_sigmoid_logit(out.exist, swapped.exist) if out.exist is not None else None
    track = mean_sigmoid_logit(out.track, flip_classes(swapped.track)) if out.track is not None else None
    return SSLOutput(logits, exist, track)


def batch_loss(out: SSLOutput, mix: Mixtures, config: ModelConfig, sigma_deg: float = 0.0,
               smoothing: float = 0.0, exist_weight: float = 1.0, permute: bool = False,
               track_weight: float = 0.25, swapped: SSLOutput | None = None) -> torch.Tensor:
    """model outputs, the batch's Mixtures (, the outputs for its channel-swapped waves: the mirrored objective)
    -> scalar loss (module docstring)."""
    if out.exist is None:  # the seed's objective: every slot holds a talker
        targets = soft_targets(mix.angles, config.num_classes, sigma_deg) if sigma_deg > 0 else \
            angle_to_class(mix.angles, config.num_classes)
        return two_slot_cross_entropy(out.logits, targets, smoothing)
    angles, count = merge_unresolvable(mix.angles, mix.spacing, config.sr, config.sound_speed)
    if swapped is not None:
        out = average_mirrored(out, swapped, count)
    loss = direction_loss(out.logits, angles, sigma_deg, smoothing, permute)
    exist = F.binary_cross_entropy_with_logits(out.exist.float(), exist_targets(count, out.exist.shape[1]))
    loss = loss + exist_weight * exist
    if out.track is not None and out.track.shape[1] > 0:
        target = track_targets(mix, out.track.shape[1], frames_per_step(config), config.num_classes, sigma_deg)
        # summed over classes (most are empty), averaged over steps and mixtures, weighted track_weight
        bce = F.binary_cross_entropy_with_logits(out.track.float(), target, reduction="none")
        loss = loss + track_weight * bce.sum(-1).mean()
    return loss
