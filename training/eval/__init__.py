"""Evaluation: a model's scores against the truth.

- `scores`: a batch's direction and count scores as sums that add across batches and ranks (during training).
- `target_scores`: the held-out evaluation's scores per target, with the TDOA oracle and chance.
- `prior`: the TDOA oracle's reference table, drawn from the eval split's scene prior.
- `report`: metrics.json, the summary and figures from those scores.
- `plots`: the figures.
- `evaluate`: `python -m training.eval.evaluate`, which runs all of these on a run.
"""
