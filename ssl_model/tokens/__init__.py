"""Token kinds (ModelConfig.tokens): how SSLModel cuts its feature maps into tokens, one module per kind behind
tokens.kind.TokenKind. A new kind is its own module plus its name here (and in ModelConfig.tokens)."""
from __future__ import annotations

from ssl_model.tokens.bands import BandTokens
from ssl_model.tokens.frames import FrameTokens
from ssl_model.tokens.kind import TokenKind
from ssl_model.tokens.patches import PatchTokens
from ssl_model.tokens.srp import SrpTokens

TOKEN_KINDS: dict[str, type[TokenKind]] = {"patches": PatchTokens, "frames": FrameTokens, "srp": SrpTokens,
                                            "bands": BandTokens}
