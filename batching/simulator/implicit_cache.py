"""Gemini's implicit prompt cache, as the simulator models it.

Gemini 2.5 and newer models cache the start of a prompt on their own: a call whose start
repeats a recent call's start is billed that part at the cached rate and reports it as
``cachedContentTokenCount``, a part of ``promptTokenCount``. Google documents little more
than a minimum length per model and two hints (put large common content first; send calls
with a similar prefix close together), so the model here is small and stated:

- a call's prompt is its texts in order: the system instruction, then every turn (inline
  data is left out);
- it is cut into blocks of ``BLOCK_TOKENS``; every prefix of whole blocks a call sends is
  cached, per model, and lives ``ttl_s`` from its last use;
- a call's cached tokens are its longest cached prefix of whole blocks, when that is at least
  ``min_tokens`` long (and never more than its prompt).

One simulator serves one API key, as one Google project whose calls all share the cache:
which tenant's call warmed it is invisible here, as it is to Google.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Iterable

from batching.tokens import CHARS_PER_TOKEN

#: Tokens per cached block: a prefix counts in whole blocks.
BLOCK_TOKENS = 256
#: Cached prefixes kept at most (the least recently used go first).
MAX_PREFIXES = 200_000

_BLOCK_CHARS = BLOCK_TOKENS * CHARS_PER_TOKEN
#: Between two texts of a prompt, so that moving text from one part to the next changes it.
_SEPARATOR = "\x1e"


class ImplicitCache:
    """The prefixes calls sent lately, to say how much of a new call's prompt is cached."""

    def __init__(self, max_prefixes: int = MAX_PREFIXES) -> None:
        self._max = max_prefixes
        #: Digest of a prefix -> when a call last sent it (monotonic seconds), oldest first.
        self._last_used: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        """Prefixes kept now, for tests of the size bound."""
        return len(self._last_used)

    def clear(self) -> None:
        """Forget every prefix."""
        self._last_used.clear()

    def admit(
        self,
        model: str,
        texts: Iterable[str],
        prompt_tokens: int,
        now: float,
        *,
        min_tokens: int,
        ttl_s: float,
    ) -> int:
        """The tokens of this call's prompt served from the cache, and cache its prefixes.
        ``min_tokens`` 0 turns the cache off (nothing is kept)."""
        if min_tokens <= 0 or ttl_s <= 0:
            return 0
        self._expire(now - ttl_s)
        first = math.ceil(min_tokens / BLOCK_TOKENS)  # blocks a prefix needs to be cached
        prompt = _SEPARATOR.join(texts)
        if len(prompt) < first * _BLOCK_CHARS:
            return 0  # too short to cache or be cached: most calls, so no hashing for them
        hit = 0
        for blocks, digest in enumerate(_prefix_digests(model, prompt), start=1):
            if blocks < first:
                continue
            if digest in self._last_used:
                hit = blocks
                self._last_used.move_to_end(digest)
            self._last_used[digest] = now
        while len(self._last_used) > self._max:
            self._last_used.popitem(last=False)
        return min(hit * BLOCK_TOKENS, prompt_tokens)

    def _expire(self, before: float) -> None:
        while self._last_used:
            digest, used = next(iter(self._last_used.items()))
            if used >= before:
                return
            del self._last_used[digest]


def _prefix_digests(model: str, prompt: str) -> list[bytes]:
    """A digest of each prefix of whole blocks of the prompt (the model's name first)."""
    running = hashlib.blake2b(model.encode(), digest_size=16)
    digests = []
    for start in range(0, len(prompt) - _BLOCK_CHARS + 1, _BLOCK_CHARS):
        running.update(prompt[start : start + _BLOCK_CHARS].encode())
        digests.append(running.copy().digest())
    return digests
