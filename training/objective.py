"""The training objective: direction per slot, existence per slot (how many talk), and the spatial track.

- Directions: cross-entropy of slot i against the i-th counted talker's class (slots in ascending angle order;
  soft Gaussian targets with optim.label_sigma_deg), only for slots that hold a talker. A model without a count
  head is the seed's: every slot always holds one (the sum over slots of the batch-mean cross-entropy).
- Existence (count_head): binary cross-entropy of slot i's logit against "more than i talkers": an ordinal
  count, read back as the number of slots whose probability passes 0.5.
- Track (frame_head): per step of the model's pooled tokens, binary cross-entropy of each direction class against
  a bump of width label_sigma_deg (at least one class) around every talker active in that step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl_model.config import ModelConfig
from ssl_model.metrics import two_slot_cross_entropy
from ssl_model.model import SSLOutput
from ssl_model.targets import angle_to_class, class_centers, soft_targets
from training.data.mixtures import Mixtures


def direction_loss(logits: torch.Tensor, angles: torch.Tensor, sigma_deg: float, smoothing: float) -> torch.Tensor:
    """logits [B, S, C], angles [B, S] (NaN: empty slot) -> scalar: the mean over held slots, times S (so that a
    batch where every slot is held gives the seed's sum over slots)."""
    held = torch.isfinite(angles)
    if not bool(held.any()):
        return logits.sum() * 0.0
    filled = torch.nan_to_num(angles, nan=0.0)
    num_classes = logits.shape[-1]
    target = soft_targets(filled, num_classes, sigma_deg) if sigma_deg > 0 else angle_to_class(filled, num_classes)
    per_item = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(0, 1) if sigma_deg > 0 else target.flatten(),
                               reduction="none", label_smoothing=smoothing).view(held.shape)
    return (per_item * held).sum() / held.sum() * angles.shape[1]


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


def batch_loss(out: SSLOutput, mix: Mixtures, config: ModelConfig, sigma_deg: float = 0.0,
               smoothing: float = 0.0) -> torch.Tensor:
    """model outputs, the batch's Mixtures -> scalar loss (module docstring)."""
    if out.exist is None:  # the seed's objective: every slot holds a talker
        targets = soft_targets(mix.angles, config.num_classes, sigma_deg) if sigma_deg > 0 else \
            angle_to_class(mix.angles, config.num_classes)
        return two_slot_cross_entropy(out.logits, targets, smoothing)
    loss = direction_loss(out.logits, mix.angles, sigma_deg, smoothing)
    loss = loss + F.binary_cross_entropy_with_logits(out.exist.float(), exist_targets(mix.count, out.exist.shape[1]))
    if out.track is not None and out.track.shape[1] > 0:
        target = track_targets(mix, out.track.shape[1], frames_per_step(config), config.num_classes, sigma_deg)
        # summed over classes (most are empty), averaged over steps and mixtures, weighted 1/4
        bce = F.binary_cross_entropy_with_logits(out.track.float(), target, reduction="none")
        loss = loss + 0.25 * bce.sum(-1).mean()
    return loss
