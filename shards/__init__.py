"""The shard contract, shared by `simulate` (which writes shards) and `training` (which reads them).

- `shards.layout`: names of shards, samples, sidecars and manifests; split folders; per-shard seeds.
- `shards.files`: byte-reproducible tars, atomic writes, sidecars, reading a shard from a path or any
  WebDataset URL (`pipe:`, `http(s)://`, ...) and parsing it strictly.
- `shards.manifest`: per-split manifests merged from sidecars.
- `shards.samples`: member names and metadata keys, encoding, validated decoding.
- `shards.array`: the array record (sample rate, mic spacing, speed of sound, sources) and SOUND_SPEED.
- `shards.audio`: speech files and members: finding, decoding, downmixing, resampling, cropping.
- `shards.prior`: the scene prior a split's manifest records (`config`): rooms, RT60s, array, source placement.
- `shards.scenes`: vectorized, seeded draws from a scene prior (the simulator's scenes, the oracle's reference).
- `shards.geometry`: per-source angles, distance and TDOA seen from the array (a sample's `sources`).
- `shards.dsp`: signal-processing helpers both sides use (FFT sizes).
- `shards.faults`: `fault_point(name)`, where a fault test may crash a process (SSL_TEST_KILL_AT); a no-op otherwise.

The format itself is specified in shards/README.md. Output folders written here by `python -m simulate
--out shards/` (train/, eval/, speech/) are data, not part of the package.
"""
