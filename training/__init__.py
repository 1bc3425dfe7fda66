"""training: the training loop, and its two wings.

- `training.data`: shards and speech in, Mixtures out (sources, error markers, streams, reservoirs, speech, noise,
  mixing, mixtures, batches, the fixed eval set).
- `training.eval`: a run's scores on the held-out split (batch scores during training, the evaluator, its scores,
  oracle prior, report and plots).
- the loop (this package): config, budget, launch, schedule, objective, checkpoint, resume, warm start, run log,
  train.
"""
