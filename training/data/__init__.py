"""The data path: shards and speech in, Mixtures out.

- `sources`: which shards and speech a split reads, and checks that they fit the model.
- `markers`: the error markers a stream passes on instead of a broken shard or sample.
- `streams`: WebDataset pipelines of scenes and speech under an error policy.
- `reservoirs`: shuffling buffers of scenes and speech segments.
- `speech`: the synthetic speech-like generator.
- `noise`: spherically diffuse noise fields.
- `mixing`: device-side mixing primitives (FFT convolution, noise at an SNR, activity, delays, low-pass).
- `mixtures`: the one builder of training and eval mixtures.
- `batches`: TrainData, the per-step batches.
- `eval_set`: the fixed, seeded eval set.
"""
