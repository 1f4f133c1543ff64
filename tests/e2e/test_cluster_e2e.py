"""The local cluster end to end: supervisor, nginx, three gunicorn replicas, worker, beat,
Flower and the simulator, started as ``make run`` starts them, on free ports."""

from __future__ import annotations

import math
import os
import re
import signal
import ssl
import threading
import time
import urllib.parse
import urllib.request

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from batchgate.apikeys import ApiKeyStore
from batching.simulator.answers import answer_for
from tests import tls_probe
from tests.clients import ClientRun, gemini_sdk_replies, openai_sdk_replies, read_events, submit_and_collect
from tests.conftest import RunningCluster
from tests.e2e.load_helpers import assert_own_answers, bodies, burst
from tests.harness import first_call_fails_seed, http_json, wait_until


def test_200_concurrent_tasks_through_nginx_are_batched(cluster: RunningCluster) -> None:
    cluster.sim_reset()
    run = submit_and_collect(cluster.url, api_key=cluster.api_key, bodies=bodies("e2e", 200))
    assert_own_answers(run)
    stats = cluster.sim_stats()
    assert stats["items"] == 200
    # Batched: at least four requests a call on average (unbatched: 200 calls). How many more
    # depends on how fast 200 submissions reach the worker, i.e. on the machine and its load.
    assert stats["calls"] <= 200 / 4, stats


def test_faults_injected_through_the_simulator_are_absorbed(cluster: RunningCluster) -> None:
    cluster.sim_reset()
    cluster.sim_config(drop_item_rate=0.05, error_rate=0.05, seed=first_call_fails_seed(0.05))
    try:
        run = submit_and_collect(cluster.url, api_key=cluster.api_key, bodies=bodies("faults", 200))
    finally:
        cluster.sim_config(drop_item_rate=0.0, error_rate=0.0)
    assert_own_answers(run)
    stats = cluster.sim_stats()
    assert stats["errors"] > 0 and stats["dropped_items"] > 0, stats


def test_killing_a_replica_mid_run_loses_nothing(cluster: RunningCluster) -> None:
    victim = f"api-{cluster.settings.api.api_ports[0]}"
    old_pid = cluster.cluster.pid(victim)
    cluster.sim_reset()
    cluster.sim_config(overhead_ms=400)  # keep the tasks in flight while the replica dies
    result: dict[str, ClientRun] = {}
    clients = threading.Thread(
        target=lambda: result.update(
            run=submit_and_collect(cluster.url, api_key=cluster.api_key, bodies=bodies("kill", 200))
        )
    )
    try:
        clients.start()
        wait_until(lambda: cluster.sim_stats()["calls"] >= 1, 30, "the first model call")
        os.killpg(old_pid, signal.SIGKILL)  # the gunicorn master and its workers
        clients.join(120)
    finally:
        cluster.sim_config(overhead_ms=150)
    assert not clients.is_alive()
    assert_own_answers(result["run"])
    new_pid = wait_until(
        lambda: (p := cluster.cluster.pid(victim)) and p != old_pid and p, 30, "replica restart"
    )
    assert new_pid != old_pid
    port = cluster.settings.api.api_ports[0]
    wait_until(lambda: http_json("GET", f"http://127.0.0.1:{port}/health")[0] == 200, 30, "restarted replica")


def test_ready_and_health_through_nginx(cluster: RunningCluster) -> None:
    assert http_json("GET", f"{cluster.url}/health")[0] == 200
    status, _, body = http_json("GET", f"{cluster.url}/ready")
    assert status == 200 and body["workers"] >= 1
    status, _, body = http_json("GET", f"{cluster.url}/api/v1/tasks/does-not-exist", headers=cluster.headers)
    assert status == 404 and body["error"]["code"] == "not_found"


@pytest.mark.skipif(not tls_probe.curl_available(), reason="curl is not installed (make test installs it)")
def test_https_with_http2_answers_health_and_a_task(cluster: RunningCluster) -> None:
    port = cluster.settings.stack.nginx_tls_port
    assert tls_probe.handshake(port, ssl.TLSVersion.TLSv1_3) == ("TLSv1.3", "h2")
    with pytest.raises(ssl.SSLError):
        tls_probe.handshake(port, ssl.TLSVersion.TLSv1_1)

    version, status, _, _ = tls_probe.curl_http2("GET", f"{cluster.https_url}/health")
    assert (version, status) == ("HTTP/2", 200)
    prompt = f"over h2 {os.getpid()}: name three rivers"
    version, status, headers, task = tls_probe.curl_http2(
        "POST", f"{cluster.https_url}/api/v1/task?wait=30", {"prompt": prompt}, headers=cluster.headers
    )
    assert (version, status) == ("HTTP/2", 200), task
    assert isinstance(task, dict) and task["status"] == "succeeded"
    assert task["result"]["text"] == answer_for(prompt)
    assert task["request_id"] == headers["x-request-id"]
    version, status, _, again = tls_probe.curl_http2(
        "GET", f"{cluster.https_url}/api/v1/tasks/{task['id']}", headers=cluster.headers
    )
    assert (version, status) == ("HTTP/2", 200) and again == task


def test_request_ids_reach_the_task_record_and_the_access_log(cluster: RunningCluster) -> None:
    given = f"client-{os.getpid()}.{time.monotonic_ns()}"
    status, headers, body = http_json(
        "POST",
        f"{cluster.url}/api/v1/tasks",
        {"prompt": "with a request id"},
        headers={**cluster.headers, "X-Request-ID": given},
    )
    assert status == 202 and headers["X-Request-ID"] == given
    kept = http_json("GET", f"{cluster.url}/api/v1/tasks/{body['id']}?wait=30", headers=cluster.headers)[2]
    assert kept["status"] == "succeeded" and kept["request_id"] == given

    status, headers, body = http_json(
        "POST", f"{cluster.url}/api/v1/tasks", {"prompt": "without a request id"}, headers=cluster.headers
    )
    generated = headers["X-Request-ID"]
    assert status == 202 and re.fullmatch(r"[0-9a-f]{32}", generated)
    made = http_json("GET", f"{cluster.url}/api/v1/tasks/{body['id']}", headers=cluster.headers)[2]
    assert made["request_id"] == generated

    access_log = cluster.cluster.log_path("nginx-access")

    def logged(request_id: str) -> bool:
        return any(
            '"POST /api/v1/tasks HTTP/1.1" 202 ' in line and line.endswith(f" id={request_id}")
            for line in access_log.read_text().splitlines()
        )

    for request_id in (given, generated):
        wait_until(lambda request_id=request_id: logged(request_id), 5, f"{request_id} in the access log")


def test_prompts_and_keys_never_reach_the_logs(cluster: RunningCluster) -> None:
    settings = cluster.settings
    key = ApiKeyStore(
        redis.Redis.from_url(settings.broker.redis_url, decode_responses=True), settings.broker.key_prefix
    ).create("premium", "log check")
    tag = f"{os.getpid()}x{time.monotonic_ns()}"
    prompts = [f"zebra-{tag}-native", f"zebra-{tag}-gemini", f"zebra-{tag}-openai", f"zebra-{tag}-stream"]
    status, _, task = http_json(
        "POST", f"{cluster.url}/api/v1/task?wait=30", {"prompt": prompts[0]}, headers={"X-API-Key": key}
    )
    assert status == 200 and task["status"] == "succeeded", task
    # An event stream with the key in the query string, as a browser's EventSource sends it.
    events = read_events(f"{cluster.url}/api/v1/tasks/{task['id']}/events?key={key}", {})
    assert events[-1][1] == "succeeded", events
    # The Gemini drop-in with the key in the header the google-genai SDK sends.
    gemini = {"contents": [{"role": "user", "parts": [{"text": prompts[1]}]}]}
    status, _, reply = http_json(
        "POST",
        f"{cluster.url}/v1beta/models/gemini-2.5-flash:generateContent",
        gemini,
        headers={"x-goog-api-key": key},
        timeout=40,
    )
    assert status == 200, reply
    openai = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": prompts[2]}]}
    status, _, reply = http_json(
        "POST",
        f"{cluster.url}/v1/chat/completions",
        openai,
        headers={"Authorization": f"Bearer {key}"},
        timeout=40,
    )
    assert status == 200, reply
    streamed = {"prompt": prompts[3], "stream": True}
    status, _, task = http_json(
        "POST", f"{cluster.url}/api/v1/task?wait=30", streamed, headers={"X-API-Key": key}, timeout=40
    )
    assert status == 200 and task["status"] == "succeeded", task
    # A wrong key in the query string, refused: also never logged.
    wrong = f"bg_wrong{tag}"
    status, _, _ = http_json("POST", f"{cluster.url}/v1beta/models/m:generateContent?key={wrong}", gemini)
    assert status in (400, 401, 403)

    time.sleep(1.5)  # nginx flushes its access log every second
    logs = sorted(path for path in cluster.cluster.logs_dir.rglob("*") if path.is_file())
    assert {"nginx-access.log", "worker.log", "simulator.log"} <= {path.name for path in logs}
    access = cluster.cluster.logs("nginx-access")
    assert "/v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1" in access
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in (key, wrong, f"zebra-{tag}"):
            assert secret not in text, f"{secret} in {path.name}"


def test_rate_limits_hold_across_the_three_replicas(cluster: RunningCluster) -> None:
    settings = cluster.settings
    free_key = ApiKeyStore(
        redis.Redis.from_url(settings.broker.redis_url, decode_responses=True), settings.broker.key_prefix
    ).create("free", "e2e burst")
    results, elapsed = burst(cluster.url, free_key, 50)
    admitted = [h for s, h in results if s == 202]
    refused = [h for s, h in results if s == 429]
    refill = math.ceil(elapsed * settings.edge.tier_free_rate)
    assert settings.edge.tier_free_burst <= len(admitted) <= settings.edge.tier_free_burst + refill, (
        len(admitted),
        elapsed,
    )
    assert len(admitted) + len(refused) == 50
    assert all(h["Retry-After"] == "1" for h in refused)  # 1/s: the next token is under a second away
    assert all(h["X-RateLimit-Limit"] == "10" for h in admitted + refused)

    # Another key in the same second is unaffected.
    status, _, _ = http_json(
        "POST", f"{cluster.url}/api/v1/tasks", {"prompt": "premium now"}, headers=cluster.headers
    )
    assert status == 202

    # After waiting what Retry-After said, the next request is admitted.
    time.sleep(int(refused[-1]["Retry-After"]))
    status, _, _ = http_json(
        "POST", f"{cluster.url}/api/v1/tasks", {"prompt": "after waiting"}, headers={"X-API-Key": free_key}
    )
    assert status == 202


def test_key_b_cannot_read_key_a_tasks_through_nginx(cluster: RunningCluster) -> None:
    settings = cluster.settings
    other = ApiKeyStore(
        redis.Redis.from_url(settings.broker.redis_url, decode_responses=True), settings.broker.key_prefix
    ).create("basic")
    _, headers, _body = http_json(
        "POST", f"{cluster.url}/api/v1/tasks", {"prompt": "private"}, headers=cluster.headers
    )
    status, _, denied = http_json("GET", f"{cluster.url}{headers['Location']}", headers={"X-API-Key": other})
    assert status == 404 and denied["error"]["code"] == "not_found"
    assert http_json("GET", f"{cluster.url}{headers['Location']}", headers=cluster.headers)[0] == 200


def test_prometheus_counts_requests_across_the_three_replicas(cluster: RunningCluster) -> None:
    def posts_counted(base: str) -> float:
        status, _, text = http_json("GET", f"{base}/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(text)}
        return sum(
            s.value
            for s in families["batchgate_http_requests"].samples
            if s.labels["method"] == "POST" and s.labels["route"] == "/api/v1/tasks"
        )

    replicas = [f"http://127.0.0.1:{port}" for port in cluster.settings.api.api_ports]
    # Reading /metrics flushes that replica's pending counts: read each once, so earlier
    # tests' requests are all in Redis before the count starts.
    before = [posts_counted(base) for base in replicas][-1]
    results, _ = burst(cluster.url, cluster.api_key, 30)  # least_conn spreads them over the replicas
    assert [s for s, _ in results].count(202) == 30
    # Every replica reports the cluster's count, whichever replica answered each request
    # (replicas add their counts to Redis once a second).
    wait_until(
        lambda: [posts_counted(base) for base in replicas] == [before + 30] * 3,
        5,
        "every replica to report the 30 submissions",
    )


def test_dashboard_and_its_stream_work_through_nginx(cluster: RunningCluster) -> None:
    status, headers, page = http_json("GET", f"{cluster.url}/dashboard")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and "batchgate" in page

    def first_event() -> bool:
        # The key as the dashboard's EventSource sends it (nginx logs the path without it).
        url = f"{cluster.url}/api/v1/metrics/stream?key={urllib.parse.quote(cluster.api_key)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            return response.readline() == b"event: metrics\n" and response.readline().startswith(b"data: {")

    wait_until(first_event, 30, "a metrics event through nginx")


def test_task_events_stream_through_nginx_in_order(cluster: RunningCluster) -> None:
    cluster.sim_config(overhead_ms=600)
    headers = {"X-API-Key": cluster.api_key}
    try:
        _, _, body = http_json(
            "POST", f"{cluster.url}/api/v1/tasks", {"prompt": "events via nginx"}, headers=headers
        )
        events = read_events(f"{cluster.url}/api/v1/tasks/{body['id']}/events", headers)
    finally:
        cluster.sim_config(overhead_ms=150)
    assert [name for _, name, _ in events] == ["queued", "running", "succeeded"]
    assert "events via nginx" in events[-1][2]["result"]["text"]


def test_streamed_chunks_pass_nginx_as_they_arrive(cluster: RunningCluster) -> None:
    """Deltas reach the client while the model is still streaming: nginx does not buffer."""
    cluster.sim_config(per_output_token_ms=40)  # about a second between the answer's chunks
    prompt = "stream through nginx, a few words at a time please"
    try:
        _, _, body = http_json(
            "POST", f"{cluster.url}/api/v1/tasks", {"prompt": prompt, "stream": True}, headers=cluster.headers
        )
        arrivals: list[tuple[float, str]] = []
        request = urllib.request.Request(
            f"{cluster.url}/api/v1/tasks/{body['id']}/events", headers=cluster.headers
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            for raw in response:
                line = raw.decode().strip()
                if line.startswith("event: "):
                    arrivals.append((time.monotonic(), line[7:]))
    finally:
        cluster.sim_config(per_output_token_ms=0.05)
    names = [name for _, name in arrivals]
    assert names[:2] == ["queued", "running"] and names[-1] == "succeeded" and names.count("delta") >= 2, (
        names
    )
    first_delta = next(at for at, name in arrivals if name == "delta")
    assert arrivals[-1][0] - first_delta > 0.3, arrivals  # chunks came one by one, not all at the end


def test_the_google_genai_sdk_through_nginx_is_batched(cluster: RunningCluster) -> None:
    cluster.sim_reset()
    replies = gemini_sdk_replies(cluster.url, cluster.api_key, [f"via nginx {i}" for i in range(50)])
    assert all(f"via nginx {i}" in r.text for i, r in enumerate(replies))
    stats = cluster.sim_stats()
    # Batched: at least four requests a call on average (unbatched: 50 calls). How many more
    # depends on how fast the 50 submissions reach the worker, i.e. on the machine.
    assert stats["items"] == 50 and stats["calls"] <= 50 // 4, stats


def test_the_openai_sdk_through_nginx_is_batched(cluster: RunningCluster) -> None:
    cluster.sim_reset()
    replies = openai_sdk_replies(cluster.url, cluster.api_key, [f"openai via nginx {i}" for i in range(50)])
    assert all(f"openai via nginx {i}" in r.choices[0].message.content for i, r in enumerate(replies))
    stats = cluster.sim_stats()
    # Batched: at least four requests a call on average (unbatched: 50 calls). How many more
    # depends on how fast the 50 submissions reach the worker, i.e. on the machine.
    assert stats["items"] == 50 and stats["calls"] <= 50 // 4, stats


def test_a_five_turn_conversation_over_three_replicas_survives_killing_them_all(
    cluster: RunningCluster,
) -> None:
    """Turns go to the replicas in turn; all three die (and are restarted) mid-conversation."""
    session = f"e2e-chat-{os.getpid()}-{time.monotonic_ns()}"
    prompts = [f"{session} turn {n}: and what comes after step {n}?" for n in range(1, 6)]
    replicas = [f"http://127.0.0.1:{port}" for port in cluster.settings.api.api_ports]
    names = [f"api-{port}" for port in cluster.settings.api.api_ports]

    def submit(n: int) -> str:
        status, _, body = http_json(
            "POST",
            f"{replicas[n % 3]}/api/v1/tasks",
            {"prompt": prompts[n], "session_id": session},
            headers=cluster.headers,
        )
        assert status == 202, body
        return str(body["id"])

    cluster.sim_reset()
    cluster.sim_config(overhead_ms=400)  # keep turns in flight while the replicas die
    try:
        ids = [submit(n) for n in range(3)]  # back to back, one per replica
        old = {name: cluster.cluster.kill(name) for name in names}
        for name in names:
            wait_until(lambda name=name: cluster.cluster.pid(name) != old[name], 30, f"{name} restarted")
        for url in replicas:
            wait_until(lambda url=url: http_json("GET", f"{url}/health")[0] == 200, 30, f"{url} healthy")
        ids += [submit(n) for n in range(3, 5)]
        tasks = []
        for task_id in ids:
            status, _, task = http_json(
                "GET", f"{cluster.url}/api/v1/tasks/{task_id}?wait=30", timeout=40, headers=cluster.headers
            )
            assert status == 200, task
            tasks.append(task)
    finally:
        cluster.sim_config(overhead_ms=150)

    assert [t["status"] for t in tasks] == ["succeeded"] * 5, tasks
    assert [t["result"]["text"] for t in tasks] == [answer_for(p) for p in prompts]
    assert [t["finished_at"] for t in tasks] == sorted(t["finished_at"] for t in tasks)
    status, _, body = http_json("GET", f"{cluster.url}/api/v1/sessions/{session}", headers=cluster.headers)
    assert status == 200, body
    expected = [turn for p in prompts for turn in (("user", p), ("model", answer_for(p)))]
    assert [(t["role"], t["text"]) for t in body["turns"]] == expected
    # The model saw each turn with exactly the turns before it.
    calls = http_json("GET", f"{cluster.sim}/_sim/requests")[2]["requests"]
    for n, prompt in enumerate(prompts[1:], start=1):  # a first turn has no history: it may be packed
        (call,) = [c for c in calls if c["body"]["contents"][-1]["parts"][-1]["text"] == prompt]
        seen = [(c.get("role", "user"), c["parts"][0]["text"]) for c in call["body"]["contents"]]
        assert seen == [*expected[: 2 * n], ("user", prompt)]
