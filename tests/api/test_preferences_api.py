"""User preferences through the API, end to end on a real stack whose preferences live in a
throwaway PostgreSQL database: validation, isolation between keys, their effect on the next
task, and surviving a restart of everything but PostgreSQL."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from batchgate.apikeys import ApiKeyStore
from batchgate.settings import Settings
from tests import pg
from tests.conftest import stack_env
from tests.harness import (
    Process,
    http_json,
    start_api,
    start_redis,
    start_simulator,
    start_worker,
    stop_all,
    wait_until,
)


class PreferencesStack:
    """Redis, simulator, worker and API with preferences in PostgreSQL; everything but
    PostgreSQL can be stopped and started again (Redis keeps nothing on disk)."""

    def __init__(self, logs_dir: Path, database_url: str) -> None:
        self.logs_dir = logs_dir
        self.database_url = database_url
        #: Two premium keys; their secrets are registered again in every new Redis.
        self.key = "bg_test_preferences_key_one"
        self.other_key = "bg_test_preferences_key_two"
        self.processes: list[Process] = []

    def start(self) -> None:
        redis_proc, redis_url = start_redis(self.logs_dir)
        self.processes = [redis_proc]
        self.env = stack_env(redis_url, BATCHGATE_DATABASE_URL=self.database_url)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        for secret in (self.key, self.other_key):
            ApiKeyStore(client, Settings.from_env(self.env).broker.key_prefix).create(
                "premium", "test", key=secret
            )
        client.close()
        sim, self.simulator = start_simulator(self.logs_dir, self.env)
        self.processes.append(sim)
        self.env["BATCHGATE_SIMULATOR_URL"] = self.simulator
        self.processes.append(start_worker(self.logs_dir, self.env))
        api, self.api = start_api(self.logs_dir, self.env)
        self.processes.append(api)
        wait_until(lambda: http_json("GET", f"{self.api}/ready")[0] == 200, 30, "a consuming worker")

    def stop(self) -> None:
        stop_all(*reversed(self.processes))
        self.processes = []

    def call(self, method: str, path: str, body: Any = None, key: str | None = None) -> tuple[int, dict, Any]:
        headers = {"X-API-Key": key or self.key}
        return http_json(method, f"{self.api}{path}", body, timeout=30, headers=headers)

    def run_task(self, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        """Submit and wait; the body the simulator received for it (found by its prompt)."""
        status, _, answer = self.call("POST", "/api/v1/task?wait=20", body, key)
        assert status == 200, answer
        assert answer["status"] == "succeeded", answer
        return self.model_request(body["prompt"])

    def model_request(self, prompt: str) -> dict[str, Any]:
        log = http_json("GET", f"{self.simulator}/_sim/requests?limit=50")[2]["requests"]
        matching = [entry for entry in log if prompt in str(entry["body"].get("contents"))]
        assert len(matching) == 1, log
        return matching[0]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def prefs_stack(logs_dir: Path, pg_url: str) -> Iterator[PreferencesStack]:
    stack = PreferencesStack(logs_dir, pg_url)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def system_text(model_request: dict[str, Any]) -> str:
    """The system text a task sent, after the tenant's cache scope line every call opens with."""
    instruction = model_request["body"].get("systemInstruction") or {}
    text = "".join(part.get("text", "") for part in instruction.get("parts", []))
    scope, _, rest = text.partition("\n\n")
    assert scope.startswith("[cache scope "), text
    return rest


def test_preference_endpoints_validate_and_answer_json(prefs_stack: PreferencesStack) -> None:
    path = "/api/v1/users/val-user/preferences"
    assert http_json("GET", f"{prefs_stack.api}{path}")[0] == 401
    status, _, body = prefs_stack.call("GET", path)
    assert (status, body["error"]["code"]) == (404, "not_found")

    status, _, body = prefs_stack.call("PUT", path, {"generation": {"temperature": 9}})
    assert (status, body["error"]["code"]) == (422, "invalid_request")
    assert body["error"]["message"].startswith("generation.temperature:")
    status, _, body = prefs_stack.call("PUT", path, {"colour": "blue"})
    assert status == 422 and body["error"]["message"].startswith("colour:")
    status, _, body = prefs_stack.call("PUT", path, ["not", "an", "object"])
    assert status == 422
    status, _, body = prefs_stack.call("PUT", "/api/v1/users/-bad-/preferences", {})
    assert status == 422 and body["error"]["message"].startswith("user_id:")

    raw = {"X-API-Key": prefs_stack.key}
    for content_type, data, expected in (("text/plain", b"{}", 415), ("application/json", b"{oops", 400)):
        request = urllib.request.Request(
            f"{prefs_stack.api}{path}", data=data, method="PUT", headers={**raw, "Content-Type": content_type}
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == expected
        caught.value.close()

    document = {"model": "gemini-2.5-pro", "language": "Italian", "generation": {"top_p": 0.5}}
    status, headers, body = prefs_stack.call("PUT", path, document)
    assert (status, body) == (200, document)
    status, headers, body = prefs_stack.call("GET", path)
    assert (status, body) == (200, document)
    assert headers["Last-Modified"].endswith("GMT")

    # Another key's user of the same name does not exist.
    assert prefs_stack.call("GET", path, key=prefs_stack.other_key)[0] == 404
    assert prefs_stack.call("DELETE", path, key=prefs_stack.other_key)[0] == 404
    assert prefs_stack.call("GET", path)[0] == 200

    assert prefs_stack.call("DELETE", path)[0] == 204
    assert prefs_stack.call("GET", path)[0] == 404


def test_preferences_change_the_next_task_and_survive_a_restart_of_all_but_postgres(
    prefs_stack: PreferencesStack,
) -> None:
    path = "/api/v1/users/ada/preferences"
    preferences = {
        "model": "gemini-prefs-model",
        "system": "You are a terse assistant.",
        "language": "French",
        "generation": {"temperature": 0.3, "max_output_tokens": 64},
    }
    assert prefs_stack.call("PUT", path, preferences)[0] == 200

    # The next task of that user runs with them.
    sent = prefs_stack.run_task({"prompt": "Name a river in Europe", "user_id": "ada"})
    assert sent["model"] == "gemini-prefs-model"
    assert sent["body"]["generationConfig"]["temperature"] == 0.3
    assert sent["body"]["generationConfig"]["maxOutputTokens"] == 64
    assert system_text(sent) == "You are a terse assistant.\n\nAnswer in French."

    # The request's own fields win, generation settings key by key.
    sent = prefs_stack.run_task(
        {
            "prompt": "Name a mountain in Asia",
            "user_id": "ada",
            "model": "gemini-explicit",
            "system": "You are a geographer.",
            "generation": {"temperature": 0.9},
        }
    )
    assert sent["model"] == "gemini-explicit"
    assert sent["body"]["generationConfig"]["temperature"] == 0.9
    assert sent["body"]["generationConfig"]["maxOutputTokens"] == 64
    assert system_text(sent) == "You are a geographer.\n\nAnswer in French."

    # Another key's "ada" has no preferences: its task runs with the defaults.
    sent = prefs_stack.run_task(
        {"prompt": "Name a lake in Africa", "user_id": "ada"}, key=prefs_stack.other_key
    )
    assert sent["model"] == "gemini-2.5-flash"
    assert "temperature" not in sent["body"].get("generationConfig", {})
    assert system_text(sent) == ""

    # Connections the database dropped (as a PostgreSQL restart does) are replaced, not used.
    with psycopg.connect(prefs_stack.database_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    assert prefs_stack.call("GET", path)[0] == 200

    # Restart Redis, the simulator, the worker and the API; PostgreSQL keeps running.
    old_api, old_simulator = prefs_stack.api, prefs_stack.simulator
    prefs_stack.stop()
    prefs_stack.start()
    assert (prefs_stack.api, prefs_stack.simulator) != (old_api, old_simulator)

    status, _, body = prefs_stack.call("GET", path)
    assert (status, body) == (200, preferences)
    sent = prefs_stack.run_task({"prompt": "Name a desert in America", "user_id": "ada"})
    assert sent["model"] == "gemini-prefs-model"
    assert sent["body"]["generationConfig"]["temperature"] == 0.3
    assert system_text(sent) == "You are a terse assistant.\n\nAnswer in French."


def test_an_api_started_without_its_database_answers_503_then_migrates_when_it_appears(
    prefs_stack: PreferencesStack,
) -> None:
    name = pg.new_name()  # not created yet: connecting fails as with a server that is down
    env = {**prefs_stack.env, "BATCHGATE_DATABASE_URL": pg.database_url(name)}
    api, url = start_api(prefs_stack.logs_dir, env, name="api-nodb")
    try:
        assert "preferences database" in api.log() and "unavailable at start" in api.log()
        headers = {"X-API-Key": prefs_stack.key}
        status, _, body = http_json("GET", f"{url}/api/v1/users/ada/preferences", headers=headers)
        assert (status, body["error"]["code"]) == (503, "database_unavailable")
        task = {"prompt": "Name a sea", "user_id": "ada"}
        status, _, body = http_json("POST", f"{url}/api/v1/tasks", task, headers=headers)
        assert (status, body["error"]["code"]) == (503, "database_unavailable")
        status, _, _ = http_json("POST", f"{url}/api/v1/tasks", {"prompt": "Name a sea"}, headers=headers)
        assert status == 202  # tasks without a user do not need the database

        pg.create_database(name)
        wait_until(
            lambda: http_json("GET", f"{url}/api/v1/users/ada/preferences", headers=headers)[0] == 404,
            15,
            "the API to migrate the new database",
        )
        assert (
            http_json("PUT", f"{url}/api/v1/users/ada/preferences", {"language": "Welsh"}, headers=headers)[0]
            == 200
        )
    finally:
        api.stop()
        pg.drop_database(name)
