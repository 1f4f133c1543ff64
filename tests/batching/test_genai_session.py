"""The SDK's HTTP session: ours, trusting the environment only for a proxy."""

from __future__ import annotations

import asyncio

import pytest

from batching.genai_client import GenaiModelClient, proxy_configured
from batching.simulator.answers import answer_for
from batching.simulator.server import SimulatorThread
from batching.types import ModelCall


@pytest.mark.parametrize(
    ("environ", "configured"),
    [
        ({}, False),
        ({"HOME": "/root", "NO_PROXY": "localhost"}, False),
        ({"HTTPS_PROXY": "http://proxy:3128"}, True),
        ({"http_proxy": "http://proxy:3128"}, True),
        ({"ALL_PROXY": "socks5://proxy:1080"}, True),
        ({"HTTPS_PROXY": ""}, False),
    ],
)
def test_a_proxy_is_what_makes_the_session_read_the_environment(
    environ: dict[str, str], configured: bool
) -> None:
    assert proxy_configured(environ) is configured


def test_calls_go_through_one_session_that_skips_the_environment(
    sim: SimulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)

    async def two_calls() -> tuple[list[str], bool, bool]:
        client = GenaiModelClient("test", sim.url, timeout_s=10)
        replies = [
            await client.generate(ModelCall(model="gemini-2.5-flash", parts=(p,))) for p in ("a?", "b?")
        ]
        session = client._session
        assert session is not None
        trusted = session.trust_env
        await client.aclose()
        return [r.text for r in replies], trusted, session.closed

    texts, trusted, closed = asyncio.run(two_calls())
    assert texts == [answer_for("a?"), answer_for("b?")]
    assert trusted is False and closed is True
