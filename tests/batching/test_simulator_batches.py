"""The simulator's Gemini Batch API and Files API: the job state machine driven by explicit
time, then what the unmodified google-genai SDK sees (inline and file jobs, list, cancel,
forced outcomes, partial failures, stats)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

from batching.simulator import SimulatorThread, answer_for
from batching.simulator.batch_jobs import (
    CANCELLED,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    BatchConflict,
    BatchItem,
    BatchStore,
    job_body,
)
from batching.simulator.settings import SimulatorSettings
from tests.batching.sim_helpers import MODEL, POISON, configure, sdk_client, sim_stats
from tests.harness import http_json

pytestmark = pytest.mark.usefixtures("baseline")

#: Short enough to keep tests fast, long enough to see a job pending or running.
TURNAROUND_S = 0.3
DEADLINE_S = 10.0
FINAL = {
    types.JobState.JOB_STATE_SUCCEEDED,
    types.JobState.JOB_STATE_FAILED,
    types.JobState.JOB_STATE_CANCELLED,
    types.JobState.JOB_STATE_EXPIRED,
}


@pytest.fixture
def batch_client(sim: SimulatorThread, baseline: None) -> Iterator[genai.Client]:
    """The Batch API is v1beta's; a fast turnaround for every test that does not set its own."""
    configure(sim, batch_turnaround_s=TURNAROUND_S, batch_outcome="succeeded")
    sdk = sdk_client(sim.url, "v1beta")
    try:
        yield sdk
    finally:
        sdk.close()


def _request(prompt: str, key: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
    if key is not None:
        request["metadata"] = {"key": key}
    return request


def _wait_final(client: genai.Client, name: str) -> types.BatchJob:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        job = client.batches.get(name=name)
        if job.state in FINAL:
            return job
        assert time.monotonic() < deadline, f"{name} still {job.state}"
        time.sleep(0.05)


# --- the state machine, no server --------------------------------------------------------


def test_a_job_is_pending_then_running_then_due_at_its_turnaround() -> None:
    store = BatchStore()
    job = store.create(MODEL, [BatchItem(None, {"key": "a"}, _request("x"))], 100.0, 0.0, 4.0)
    assert job.name.startswith("batches/") and store.get(job.id) is job
    assert (job.state_at(100.0), job.state_at(100.9)) == (PENDING, PENDING)
    assert (job.state_at(101.0), job.due(103.9)) == (RUNNING, False)
    assert job.due(104.0)
    body = job_body(job, 101.0)
    assert (body["done"], body["metadata"]["state"], body["metadata"]["model"]) == (
        False,
        RUNNING,
        f"models/{MODEL}",
    )
    results = [{"response": {"candidates": []}, "metadata": {"key": "a"}}]
    store.finish(job, "succeeded", 5.0, results)
    body = job_body(job, 104.0)
    assert body["done"] and body["metadata"]["state"] == SUCCEEDED
    assert body["metadata"]["output"] == {"inlinedResponses": {"inlinedResponses": results}}
    assert body["metadata"]["batchStats"]["successfulRequestCount"] == "1"


def test_cancel_ends_a_running_job_but_not_one_that_is_due() -> None:
    store = BatchStore()
    running = store.create(MODEL, [], 0.0, 0.0, 10.0)
    store.cancel(running, 5.0, 5.0)
    assert running.state_at(20.0) == CANCELLED and "output" not in job_body(running, 20.0)["metadata"]
    due = store.create(MODEL, [], 0.0, 0.0, 10.0)
    with pytest.raises(BatchConflict):
        store.cancel(due, 10.0, 10.0)
    store.finish(due, "failed", 10.0)
    assert due.state_at(10.0) == FAILED and job_body(due, 10.0)["error"]["code"] == 13


def test_an_unknown_batch_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_outcome"):
        SimulatorSettings(batch_outcome="maybe")


# --- through the SDK ---------------------------------------------------------------------


def test_inline_job_answers_each_request_as_generate_content_would(
    sim: SimulatorThread, batch_client: genai.Client
) -> None:
    prompts = {"k1": "first question", "k2": "second question", "k3": "third question"}
    src = [_request(prompt, key) for key, prompt in prompts.items()]
    job = batch_client.batches.create(model=MODEL, src=src, config={"display_name": "inline"})
    assert job.state == types.JobState.JOB_STATE_PENDING
    assert job.name is not None and job.display_name == "inline" and job.dest is None
    done = _wait_final(batch_client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED and done.end_time is not None
    assert done.dest is not None and done.dest.inlined_responses is not None
    responses = done.dest.inlined_responses
    assert [r.metadata for r in responses] == [{"key": key} for key in prompts]
    assert [r.response.text if r.response else None for r in responses] == [
        answer_for(prompt) for prompt in prompts.values()
    ]
    stats = sim_stats(sim)
    assert (stats["batch_jobs"], stats["batch_items"], stats["calls"]) == (1, 3, 0)


def test_a_malformed_or_poisoned_request_gets_its_own_error_and_the_job_succeeds(
    batch_client: genai.Client,
) -> None:
    malformed = {
        "contents": [{"role": "model", "parts": [{"text": "no user turn"}]}],
        "metadata": {"key": "bad"},
    }
    src = [_request("fine", "ok"), malformed, _request(f"broken {POISON}", "poison")]
    job = batch_client.batches.create(model=MODEL, src=src)
    assert job.name is not None
    done = _wait_final(batch_client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None and done.dest.inlined_responses is not None
    ok, bad, poison = done.dest.inlined_responses
    assert ok.error is None and ok.response is not None and ok.response.text == answer_for("fine")
    assert bad.response is None and bad.error is not None and bad.error.code == 3
    assert bad.metadata == {"key": "bad"} and "user" in (bad.error.message or "")
    assert poison.response is None and poison.error is not None and poison.error.code == 13


def test_batch_requests_stay_outside_the_interactive_quota(
    sim: SimulatorThread, batch_client: genai.Client
) -> None:
    configure(sim, rpm=1)
    job = batch_client.batches.create(model=MODEL, src=[_request(f"q{i}", str(i)) for i in range(3)])
    assert job.name is not None
    done = _wait_final(batch_client, job.name)
    assert done.dest is not None and done.dest.inlined_responses is not None
    assert all(r.response is not None for r in done.dest.inlined_responses)
    reply = batch_client.models.generate_content(model=MODEL, contents="interactive")
    assert reply.text == answer_for("interactive")  # the one request of the minute is still free
    assert sim_stats(sim)["errors"] == 0


def test_file_job_reads_an_uploaded_jsonl_and_writes_keyed_results(
    sim: SimulatorThread, batch_client: genai.Client
) -> None:
    lines = [{"key": f"row-{i}", "request": _request(f"file prompt {i}")} for i in range(3)]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode() + b"this line is not json\n"
    uploaded = batch_client.files.upload(
        file=io.BytesIO(data), config={"mime_type": "application/jsonl", "display_name": "in"}
    )
    assert uploaded.name is not None and uploaded.size_bytes == len(data)
    fetched = batch_client.files.get(name=uploaded.name)
    assert (fetched.name, fetched.display_name, fetched.mime_type) == (
        uploaded.name,
        "in",
        "application/jsonl",
    )
    job = batch_client.batches.create(model=MODEL, src=uploaded.name)
    assert job.name is not None
    done = _wait_final(batch_client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None and done.dest.file_name is not None and done.dest.inlined_responses is None
    results = [
        json.loads(line) for line in batch_client.files.download(file=done.dest.file_name).splitlines()
    ]
    assert [r.get("key") for r in results] == ["row-0", "row-1", "row-2", None]
    for i, result in enumerate(results[:3]):
        parsed = types.GenerateContentResponse.model_validate(result["response"])
        assert parsed.text == answer_for(f"file prompt {i}")
    assert results[3]["error"]["code"] == 3 and "response" not in results[3]
    assert (sim_stats(sim)["batch_jobs"], sim_stats(sim)["batch_items"]) == (1, 4)


def test_uploading_a_file_from_a_path(tmp_path: Any, batch_client: genai.Client) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_text(json.dumps({"key": "only", "request": _request("from disk")}) + "\n")
    uploaded = batch_client.files.upload(file=path, config={"mime_type": "application/jsonl"})
    assert uploaded.name is not None
    assert batch_client.files.download(file=uploaded.name) == path.read_bytes()


def test_a_missing_input_file_is_not_found(batch_client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as raised:
        batch_client.batches.create(model=MODEL, src="files/doesnotexist")
    assert raised.value.code == 404


def test_list_shows_every_job_newest_first(batch_client: genai.Client) -> None:
    names = [batch_client.batches.create(model=MODEL, src=[_request(f"l{i}")]).name for i in range(3)]
    listed = [job.name for job in batch_client.batches.list(config={"page_size": 2})]
    assert listed == list(reversed(names))


def test_cancel_a_pending_job(sim: SimulatorThread, batch_client: genai.Client) -> None:
    configure(sim, batch_turnaround_s=60.0)
    job = batch_client.batches.create(model=MODEL, src=[_request("never answered")])
    assert job.name is not None and job.state == types.JobState.JOB_STATE_PENDING
    batch_client.batches.cancel(name=job.name)
    cancelled = batch_client.batches.get(name=job.name)
    assert cancelled.state == types.JobState.JOB_STATE_CANCELLED and cancelled.dest is None
    with pytest.raises(errors.ClientError) as raised:  # an ended job stays as it ended
        batch_client.batches.cancel(name=job.name)
    assert raised.value.code == 400


@pytest.mark.parametrize(
    "outcome, state",
    [("failed", types.JobState.JOB_STATE_FAILED), ("expired", types.JobState.JOB_STATE_EXPIRED)],
)
def test_a_forced_outcome_ends_the_job_without_results(
    sim: SimulatorThread, batch_client: genai.Client, outcome: str, state: types.JobState
) -> None:
    configure(sim, batch_outcome=outcome)
    job = batch_client.batches.create(model=MODEL, src=[_request("doomed", "d")])
    assert job.name is not None
    done = _wait_final(batch_client, job.name)
    assert done.state == state and done.dest is None


def test_a_bad_batch_outcome_is_refused_by_the_control_api(sim: SimulatorThread) -> None:
    status, _, body = http_json("POST", f"{sim.url}/_sim/config", {"batch_outcome": "maybe"})
    assert status == 400 and "batch_outcome" in body["error"]["message"]


def test_delete_and_reset_forget_jobs_and_counters(sim: SimulatorThread, batch_client: genai.Client) -> None:
    first = batch_client.batches.create(model=MODEL, src=[_request("a"), _request("b")])
    second = batch_client.batches.create(model=MODEL, src=[_request("c")])
    assert first.name is not None and second.name is not None
    assert (sim_stats(sim)["batch_jobs"], sim_stats(sim)["batch_items"]) == (2, 3)
    batch_client.batches.delete(name=first.name)
    with pytest.raises(errors.ClientError) as raised:
        batch_client.batches.get(name=first.name)
    assert raised.value.code == 404
    assert http_json("POST", f"{sim.url}/_sim/reset")[0] == 200
    assert (sim_stats(sim)["batch_jobs"], sim_stats(sim)["batch_items"]) == (0, 0)
    assert list(batch_client.batches.list()) == []
