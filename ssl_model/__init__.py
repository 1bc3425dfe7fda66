"""ssl_model: the two-mic localizer's network, its targets and scores, classical baselines, and a trained model's use.

The network
    config        ModelConfig (defaults: the seed's sizes) and its PRESETS: seed, micro (CPU-sized), srp (the
                  shipped model's layout); `preset(name, **overrides)`
    model         SSLModel: wave [B, 2, T] -> direction logits per sorted slot; optional existence (count) and
                  per-step activity (track) heads, optional mic-spacing input
    conformer     the Conformer backbone (relative-position attention, conv module)
    features      front end: level normalization, conv STFT, inter-mic phase difference, log power, steered responses
Targets and scores
    targets       angles <-> classes (NUM_CLASSES bins over 0..180 degrees), soft targets, TARGETS (lateral,
                  azimuth); decoding logits or posteriors into sorted slot angles and a talker count
    metrics       the sorted-slot cross-entropy; binned MAE per slot, MAE, accuracy within 5 / 10 degrees and
                  their breakdowns by scene factors; count confusion and location-aware detection
    oracle        reference floors: the TDOA oracle's Bayes-optimal slots and the best constant (chance)
    baselines     classical methods on the raw pair: GCC-PHAT (a fixed number of angles, or counted detections), DUET
A trained model
    loading       the one-file weights (safetensors whose metadata, LocalizerSpec, says how to feed them): save,
                  check, load; the shipped models by name, weights files and folders (model_weights)
    export        the network as a graph for other runtimes (python -m ssl_model.export)
    localizer     Localizer: weights in, waves, files or live chunks in, talkers out (angles, count, tracks)
    results       LocalizationResult, WindowResult, FrameResult: what it returns (docs/api.md)
    inputs        what it accepts (argument types, rates, waves, file headers, chunk streams); LocalizeError
    levels        whether a mic holds a usable signal; silent windows
    decoder       windows -> model -> WindowResults; a recording's windows -> its talkers
    window_stream the one stream every input takes: chunks in, each window's result as soon as it is complete
    stream_audio  the stream's stages: chunked reading, resampling and windowing, in bounded memory
    wav_stream    a WAV stream read as it arrives (standard input)
    talkers       window detections -> a recording's talkers; per-step activity maps -> tracks
    localize      the command line (python -m ssl_model.localize)
    cli_log       configs.cli_log's names (the command-line plumbing), kept for training/'s imports
    pretrained/   the shipped models: model.safetensors, its training config and model card each

`from ssl_model import SSLModel, ModelConfig, PRESETS`; Localizer, LocalizationResult, WindowResult and
LocalizeError are imported on first use (the Localizer API).
"""
from ssl_model.config import PRESETS, ModelConfig
from ssl_model.model import SSLModel

__all__ = ["SSLModel", "ModelConfig", "PRESETS", "Localizer", "LocalizationResult", "WindowResult", "LocalizeError"]
_LOCALIZER_NAMES = ("Localizer", "LocalizationResult", "WindowResult", "LocalizeError")


def __getattr__(name: str):
    # Loaded on first use (PEP 562): `import ssl_model` stays light (no torchaudio), and `python -m
    # ssl_model.export` does not find its own module half-imported by the package.
    if name in _LOCALIZER_NAMES:
        from ssl_model import localizer

        return getattr(localizer, name)
    raise AttributeError(f"module 'ssl_model' has no attribute {name!r}")
