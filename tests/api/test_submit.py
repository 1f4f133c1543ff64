"""The submit service (``api.submit.submit_task``) on a real Redis, with no Flask request:
record and message, idempotency, the cache, refusals that leave nothing behind."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.admission import Decision, Submission
from api.edge import Caller
from api.errors import ApiError
from api.schemas import TaskRequest
from api.services import Services
from api.submit import Admit, SubmitContext, submit_task
from batchgate.response_cache import cache_key
from batchgate.settings import Settings
from batchgate.tenants import inflight_key


@pytest.fixture
def svc(redis_url: str, tmp_path: Path) -> Iterator[Services]:
    tag = secrets.token_hex(4)
    settings = Settings.from_env(
        {
            "BATCHGATE_REDIS_URL": redis_url,
            "BATCHGATE_KEY_PREFIX": f"submit-{tag}",
            "BATCHGATE_QUEUE": f"submit-{tag}",
            "BATCHGATE_RUN_DIR": str(tmp_path),
        }
    )
    services = Services.build(settings)
    try:
        yield services
    finally:
        services.redis.close()


def admit_as(svc: Services, owner: str, tenant: str, max_in_flight: int = 100) -> Admit:
    """Admission through the real Redis script, for a caller already authenticated."""
    caller = Caller(owner, f"key:{owner}", 1000.0, 1000, tenant)

    def admit(submission: Submission) -> tuple[Caller, Decision]:
        decision = svc.admission.admit(
            caller.bucket,
            caller.rate,
            caller.burst,
            tenant=tenant,
            max_in_flight=max_in_flight,
            submission=submission,
        )
        if decision.reason == "too_many_in_flight":
            raise ApiError(429, "too_many_in_flight", "cap")
        return caller, decision

    return admit


def queued_messages(svc: Services) -> int:
    return int(svc.redis.llen(svc.settings.broker.queue))


def test_a_task_is_recorded_and_published_once(svc: Services) -> None:
    task = TaskRequest(prompt="hello service")
    task_id, record = submit_task(svc, task, SubmitContext(request_id="r-1"), admit_as(svc, "o1", "t1"))
    assert record["status"] == "queued" and queued_messages(svc) == 1
    stored = svc.store.get(task_id)
    assert stored is not None and stored["owner"] == "o1" and stored["request_id"] == "r-1"
    assert stored["request"]["tenant"] == "t1" and stored["request"]["model"] == svc.settings.gemini.model


def test_the_same_idempotency_key_gets_the_same_task_and_a_new_body_is_refused(svc: Services) -> None:
    ctx = SubmitContext(idempotency_key="job-1")
    admit = admit_as(svc, "o1", "t1")
    first, _ = submit_task(svc, TaskRequest(prompt="once"), ctx, admit)
    again, record = submit_task(svc, TaskRequest(prompt="once"), ctx, admit)
    assert again == first and record["status"] == "queued" and queued_messages(svc) == 1
    with pytest.raises(ApiError) as refused:
        submit_task(svc, TaskRequest(prompt="something else"), ctx, admit)
    assert refused.value.code == "idempotency_key_reused" and queued_messages(svc) == 1
    other_owner, _ = submit_task(svc, TaskRequest(prompt="once"), ctx, admit_as(svc, "o2", "t2"))
    assert other_owner != first  # keys are per owner


def test_a_cached_answer_is_served_without_a_message(svc: Services) -> None:
    task = TaskRequest(prompt="cache me")
    message = {**task.to_message(), "model": svc.settings.gemini.model}
    digest = cache_key(message)
    svc.cache.put_many(
        [(svc.cache.record_key("t1", digest), {"text": "from cache", "finish_reason": "STOP"})]
    )
    task_id, record = submit_task(svc, task, SubmitContext(), admit_as(svc, "o1", "t1"))
    assert record["cached"] is True and record["result"]["text"] == "from cache"
    assert queued_messages(svc) == 0 and svc.store.get(task_id)["status"] == "succeeded"  # type: ignore[index]
    _, elsewhere = submit_task(svc, task, SubmitContext(), admit_as(svc, "o3", "t3"))
    assert elsewhere["status"] == "queued"  # another tenant's cache is not this one's


def test_a_refused_submission_leaves_no_message_or_slot(svc: Services) -> None:
    admit = admit_as(svc, "o1", "t1", max_in_flight=1)
    kept, _ = submit_task(svc, TaskRequest(prompt="fills the cap"), SubmitContext(), admit)
    with pytest.raises(ApiError) as refused:
        submit_task(svc, TaskRequest(prompt="one too many"), SubmitContext(), admit)
    assert refused.value.code == "too_many_in_flight" and queued_messages(svc) == 1
    slots = svc.redis.zrange(inflight_key(svc.settings.broker.key_prefix, "t1"), 0, -1)
    assert slots == [kept]  # the refused one took no slot
    with pytest.raises(ApiError) as conflict:  # a refusal after admission gives its slot back
        submit_task(svc, TaskRequest(prompt="x", session_id="s1"), SubmitContext(), admit_as(svc, "o5", "t5"))
        svc.redis.set(svc.sessions.meta_key("t5", "s2"), "not a hash")
        submit_task(svc, TaskRequest(prompt="x", session_id="s2"), SubmitContext(), admit_as(svc, "o5", "t5"))
    assert conflict.value.code == "session_unreadable"
    assert len(svc.redis.zrange(inflight_key(svc.settings.broker.key_prefix, "t5"), 0, -1)) == 1
