"""Model (conv STFT, IPD features, conformer), targets, metrics, classical baselines, and the Localizer API."""
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
