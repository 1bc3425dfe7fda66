"""Model (conv STFT, IPD features, conformer), targets, metrics, classical baselines, and the Localizer API."""
from ssl_model.config import PRESETS, ModelConfig
from ssl_model.localizer import LocalizationResult, LocalizeError, Localizer, WindowResult
from ssl_model.model import SSLModel

__all__ = ["SSLModel", "ModelConfig", "PRESETS", "Localizer", "LocalizationResult", "WindowResult", "LocalizeError"]
