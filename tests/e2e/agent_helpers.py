"""What the agent tests share: the model, an answer's shape, the openai client, the simulator's log."""

from __future__ import annotations

from typing import Any

import openai
from pydantic import BaseModel

from tests.conftest import RunningCluster
from tests.harness import http_json

MODEL = "gemini-2.5-flash"


class Verdict(BaseModel):
    summary: str
    score: int
    tags: list[str]


def openai_client(cluster: RunningCluster) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=cluster.api_key, base_url=f"{cluster.url}/v1", max_retries=0)


def sim_requests(cluster: RunningCluster) -> list[dict[str, Any]]:
    return http_json("GET", f"{cluster.sim}/_sim/requests")[2]["requests"]
