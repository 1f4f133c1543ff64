"""An embedded Gemini-compatible server with a cost model and fault injection.

Batching pays off only against a model whose calls cost time and fail sometimes; this
simulator answers ``generateContent`` deterministically (``answer_for``), spends a
configurable latency per call and token, enforces a concurrency limit and an rpm quota,
and injects errors, so the whole stack and its tests run offline against the unmodified
google-genai SDK.
"""

from batching.simulator.answers import answer_for
from batching.simulator.server import SimulatorThread, create_app, serve, start_in_thread

__all__ = ["SimulatorThread", "answer_for", "create_app", "serve", "start_in_thread"]
