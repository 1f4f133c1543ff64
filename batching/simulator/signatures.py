"""Gemini 3's thought signatures, as the simulator plays them: every function call it makes is
signed, and a gemini-3 model refuses a call sent back without its signature."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

#: Models that require function calls sent back to carry their ``thoughtSignature``.
SIGNING_MODELS = ("gemini-3",)


def thought_signature_for(function_call: dict[str, Any]) -> str:
    """The opaque ``thoughtSignature`` the simulator gives a function call (deterministic)."""
    digest = hashlib.sha256(json.dumps(function_call, sort_keys=True).encode()).digest()
    return base64.b64encode(b"sim-thought:" + digest[:12]).decode()
