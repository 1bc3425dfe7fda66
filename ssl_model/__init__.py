"""Model (conv STFT, IPD features, conformer), targets, metrics and classical baselines."""
from ssl_model.config import PRESETS, ModelConfig
from ssl_model.model import SSLModel

__all__ = ["SSLModel", "ModelConfig", "PRESETS"]
