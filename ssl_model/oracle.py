"""Reference floors for binned MAE: the azimuth oracle (docs/protocol.md, fact 2) and the best constant prediction.

A two-mic array observes each source's direct-path TDOA, which fixes the lateral angle (up to near-field
terms) but not the elevation, so azimuth = |atan2(dy, dx)| is only known up to a distribution. The oracle
here knows the exact TDOAs and the prior, and makes the Bayes-optimal slot predictions for the binned MAE:

1. p(class | tdoa) per source, estimated non-parametrically, in one of two ways:
   - leave-one-out (the default): the classes of the k = 20 nearest other sources of the eval set itself in
     TDOA (all sources tied with the k-th distance included). With a few hundred sources the neighbourhood
     is wide: on the lateral target it reads ~2 degrees where the true floor is ~0.1 (docs/protocol.md).
   - `reference`: the classes of the k = 50 nearest sources of a dense reference table (tdoa [R], angles
     [R]) drawn by the caller from the same prior (e.g. R = 200,000 from shards.scenes.prior_sources);
     its neighbourhood is R / k times narrower, so the estimate approaches the true floor.
2. Per scene, the distribution of each sorted slot (the k-th smallest class of the scene's sources, sources
   independent given their TDOAs), from the per-source CDFs (a Poisson-binomial count per class).
3. Each slot predicts that distribution's median (the minimizer of expected absolute error); the floor is
   the expected |class error| * bin width under it, averaged over scenes.

This is an expected risk, not a realized score, so it is free of the optimism of scoring a point against a
neighbourhood that contains it and of the pessimism of leave-one-out on exact ties. It ignores the 1/r level
difference between mics (a weak cue at 10 cm spacing) and anything the room adds, so it is the floor for a
method that sees direct-path timing only.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ssl_model.targets import NUM_CLASSES, angle_to_class

LOO_NEIGHBOURS = 20  # leave-one-out kNN among the eval set's own sources
REFERENCE_NEIGHBOURS = 50  # kNN in a dense reference table

Reference = tuple[torch.Tensor, torch.Tensor]  # (tdoa [R], angles_deg [R]) drawn from the eval prior


def _metadata_columns(metadata: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[torch.Tensor]:
    """shard json dicts (N) -> one float64 tensor [N, sources] per key of sources[...]."""
    columns = {key: [] for key in keys}
    for index, meta in enumerate(metadata):
        sources = meta.get("sources") if isinstance(meta, dict) else None
        if not sources:
            raise ValueError(f"metadata item {index}: expected a 'sources' list")
        for key in keys:
            try:
                columns[key].append([float(src[key]) for src in sources])
            except KeyError:
                raise ValueError(f"metadata item {index}: a source lacks {key!r}") from None
    return [torch.tensor(columns[key], dtype=torch.float64) for key in keys]


def neighbour_posteriors(condition: torch.Tensor, classes: torch.Tensor, neighbours: int = LOO_NEIGHBOURS,
                         num_classes: int = NUM_CLASSES, chunk: int = 2048) -> torch.Tensor:
    """condition [M] (e.g. TDOA), classes long [M] -> p(class | condition) float64 [M, C], leave-one-out kNN."""
    m = condition.shape[0]
    if m < 2:
        raise ValueError(f"need at least 2 sources to estimate p(class | tdoa), got {m}")
    k = min(neighbours, m - 1)
    onehot = torch.nn.functional.one_hot(classes, num_classes).double()
    out = []
    for start in range(0, m, chunk):
        rows = condition[start:start + chunk]
        distance = (rows.unsqueeze(1) - condition.unsqueeze(0)).abs()
        own = torch.arange(start, start + rows.shape[0])
        distance[torch.arange(rows.shape[0]), own] = float("inf")  # leave one out
        radius = distance.kthvalue(k, dim=1, keepdim=True).values
        weights = (distance <= radius).double()
        counts = weights @ onehot
        out.append(counts / counts.sum(dim=1, keepdim=True))
    return torch.cat(out)


def reference_posteriors(condition: torch.Tensor, ref_condition: torch.Tensor, ref_classes: torch.Tensor,
                         neighbours: int = REFERENCE_NEIGHBOURS, num_classes: int = NUM_CLASSES,
                         chunk: int = 4096) -> torch.Tensor:
    """condition [M], reference condition [R] and classes long [R] -> p(class | condition) float64 [M, C] from the
    k nearest reference entries (ties at the k-th distance broken arbitrarily).

    The reference is sorted once; the k nearest entries of a query lie among the k on either side of its
    insertion point, so each chunk costs [chunk, 2k] memory, never [M, R].
    """
    r = ref_condition.shape[0]
    if ref_classes.shape != ref_condition.shape or ref_condition.dim() != 1:
        raise ValueError(f"reference tdoa and classes must both be [R], got {list(ref_condition.shape)} "
                         f"and {list(ref_classes.shape)}")
    if r < 1:
        raise ValueError("the reference table is empty")
    k = min(neighbours, r)
    order = ref_condition.double().argsort()
    sorted_ref = ref_condition.double()[order].contiguous()
    sorted_cls = ref_classes.long()[order]
    window = min(2 * k, r)
    offsets = torch.arange(window)
    out = []
    for start in range(0, condition.shape[0], chunk):
        rows = condition[start:start + chunk].double().contiguous()
        first = (torch.searchsorted(sorted_ref, rows) - k).clamp(0, r - window)
        index = first.unsqueeze(1) + offsets  # [m, window]
        distance = (sorted_ref[index] - rows.unsqueeze(1)).abs()
        nearest = index.gather(1, distance.topk(k, dim=1, largest=False).indices)  # [m, k]
        counts = torch.zeros(rows.shape[0], num_classes, dtype=torch.float64)
        counts.scatter_add_(1, sorted_cls[nearest], torch.ones(nearest.shape, dtype=torch.float64))
        out.append(counts / k)
    return torch.cat(out) if out else torch.zeros(0, num_classes, dtype=torch.float64)


def class_posteriors(tdoa: torch.Tensor, classes: torch.Tensor, reference: Reference | None = None,
                     neighbours: int | None = None, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """tdoa [M], classes long [M] (used only without a reference) -> p(class | tdoa) float64 [M, C]: leave-one-out
    among the M sources, or from `reference` = (tdoa [R], angles_deg [R]) when given."""
    if reference is None:
        return neighbour_posteriors(tdoa, classes, neighbours or LOO_NEIGHBOURS, num_classes)
    ref_tdoa, ref_angles = (torch.as_tensor(x).double().cpu().flatten() for x in reference)
    ref_classes = angle_to_class(ref_angles, num_classes)
    return reference_posteriors(tdoa.double(), ref_tdoa, ref_classes, neighbours or REFERENCE_NEIGHBOURS, num_classes)


def order_statistic_cdfs(cdfs: torch.Tensor) -> torch.Tensor:
    """per-source CDFs [N, S, C] (independent sources) -> CDF of the k-th smallest [N, S, C] (k = slot)."""
    n, s, c = cdfs.shape
    # count[j] = P(exactly j sources have class <= c), built source by source.
    count = torch.zeros(n, s + 1, c, dtype=cdfs.dtype)
    count[:, 0] = 1.0
    for source in range(s):
        q = cdfs[:, source].unsqueeze(1)  # [N, 1, C]
        shifted = torch.cat((torch.zeros_like(count[:, :1]), count[:, :-1]), dim=1)
        count = count * (1 - q) + shifted * q
    at_least = count.flip(1).cumsum(1).flip(1)  # at_least[j] = P(count >= j)
    return at_least[:, 1:]  # P(k-th smallest <= c) = P(count >= k), k = 1..S


def slot_medians(posteriors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """per-source posteriors [N, S, C] -> (each sorted slot's median class long [N, S], its CDF [N, S, C]).

    The median minimizes the expected absolute class error: the Bayes prediction for binned MAE.
    """
    slot_cdf = order_statistic_cdfs(posteriors.cumsum(-1).clamp(0, 1))
    median = (slot_cdf < 0.5 - 1e-12).sum(-1).clamp_max(posteriors.shape[-1] - 1)  # first class reaching 1/2
    return median, slot_cdf


def bayes_slot_risk(posteriors: torch.Tensor, bin_deg: float) -> torch.Tensor:
    """per-source posteriors [N, S, C] -> expected binned abs error [N, S] (degrees) of the median slot predictions."""
    median, slot_cdf = slot_medians(posteriors)
    pmf = torch.diff(slot_cdf, dim=-1, prepend=torch.zeros_like(slot_cdf[..., :1])).clamp_min(0)
    classes = torch.arange(posteriors.shape[-1], dtype=posteriors.dtype)
    return (pmf * (classes - median.unsqueeze(-1)).abs()).sum(-1) * bin_deg


def oracle_slot_classes(tdoa: torch.Tensor, angles_deg: torch.Tensor, neighbours: int | None = None,
                        num_classes: int = NUM_CLASSES, reference: Reference | None = None) -> torch.Tensor:
    """tdoa [N, S], angles_deg [N, S] of distinct scenes -> the oracle's slot predictions, classes long [N, S].

    p(class | tdoa) is leave-one-out among these sources, or read from `reference` (tdoa [R], angles_deg [R]).
    """
    classes = angle_to_class(angles_deg, num_classes)
    posteriors = class_posteriors(tdoa.double().flatten(), classes.flatten(), reference, neighbours, num_classes)
    return slot_medians(posteriors.view(*tdoa.shape, num_classes))[0]


def oracle_floor_binned_mae(metadata: Sequence[dict[str, Any]] | None = None, *, tdoa: torch.Tensor | None = None,
                            angles_deg: torch.Tensor | None = None, target: str = "azimuth",
                            neighbours: int | None = None, num_classes: int = NUM_CLASSES,
                            reference: Reference | None = None) -> torch.Tensor:
    """eval metadata (N shard json dicts) or tdoa [N, S] + angles_deg [N, S] -> floor float64 [S] in degrees.

    The Bayes floor of the per-slot binned MAE for the `target` angle given the exact TDOAs (module docstring).
    p(class | tdoa): leave-one-out among the eval sources (k = 20 by default), or, with `reference` = (tdoa [R],
    angles_deg [R]) of the same target drawn from the same prior, the k = 50 nearest reference sources.
    For `target='lateral'` the floor is near zero (up to near-field terms and the kNN resolution: ~2 degrees
    leave-one-out on 400 sources, ~0.1 from a 200,000-source reference).
    """
    if metadata is not None:
        tdoa, angles_deg = _metadata_columns(metadata, ("tdoa_s", f"{target}_deg"))
    if tdoa is None or angles_deg is None:
        raise ValueError("give eval metadata, or both tdoa [N, S] and angles_deg [N, S]")
    tdoa, angles_deg = tdoa.double().cpu(), angles_deg.double().cpu()
    if tdoa.shape != angles_deg.shape or tdoa.dim() != 2:
        raise ValueError(f"tdoa and angles must both be [N, S], got {list(tdoa.shape)} and {list(angles_deg.shape)}")
    classes = angle_to_class(angles_deg, num_classes)
    posteriors = class_posteriors(tdoa.flatten(), classes.flatten(), reference, neighbours, num_classes)
    risk = bayes_slot_risk(posteriors.view(*tdoa.shape, num_classes), 180.0 / num_classes)
    return risk.mean(dim=0)


def chance_binned_mae(true_cls: torch.Tensor, bin_deg: float = 180.0 / NUM_CLASSES) -> torch.Tensor:
    """true classes [N, S] -> float64 [S]: binned MAE of the best constant prediction per slot (the median class)."""
    true_cls = true_cls.double().cpu()
    median = true_cls.median(dim=0).values  # lower median; any median minimizes the mean absolute error
    return (true_cls - median).abs().mean(dim=0) * bin_deg
