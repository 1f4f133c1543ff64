"""Token estimates used for packing limits and for the simulator's accounting.

No tokenizer is available offline, so both sides use the common rule of thumb for
Gemini-family models: about four characters per token.
"""

from __future__ import annotations

import math

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Return the estimated token count of ``text`` (at least 1 for non-empty text)."""
    if not text:
        return 0
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))
