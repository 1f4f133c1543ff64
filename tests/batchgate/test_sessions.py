"""Conversation sessions: ordering rules (pure) and landing in Redis. (The whole pipeline is
``test_session_pipeline.py``.)"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import redis

from batchgate.sessions import (
    SessionStore,
    SessionTurn,
    SessionUnreadable,
    Turn,
    fit_history,
    lowest_turns,
    ready_turns,
)
from batchgate.taskstore import FAILED, SUCCEEDED, Outcome, TaskStore
from batching.packing import PackingLimits, plan_calls
from batching.types import InferenceRequest
from workers.conversation_rounds import ConversationRounds

# --- pure rules ----------------------------------------------------------------------------


def test_fit_history_never_starts_with_a_function_result_cut_from_its_call() -> None:
    call = {"function_call": {"name": "f", "args": {}}}
    result = {"function_response": {"name": "f", "response": {"r": "x" * 40}}}
    turns = [
        Turn("user", "a question " * 10),
        Turn("model", "", (call,)),
        Turn("user", "", (result,)),
        Turn("model", "the answer"),
    ]
    for budget in range(1, 200):
        kept = fit_history(turns, budget)
        assert not kept or (kept[0].role == "user" and not kept[0].parts), (budget, kept)
    assert fit_history(turns, 10_000) == turns


def test_fit_history_drops_the_oldest_turns_first_and_starts_with_a_user_turn() -> None:
    turns = [Turn("user", "a" * 40), Turn("model", "b" * 40), Turn("user", "c" * 40), Turn("model", "d" * 40)]
    assert fit_history(turns, 10_000) == turns
    kept = fit_history(turns, 25)  # room for about two turns of 10 tokens
    assert kept == turns[2:]
    # Room for three turns would start with a model turn: that one goes too.
    assert fit_history(turns, 35)[0].role == "user"
    assert fit_history(turns, 0) == []


def test_ready_turns_take_each_sessions_next_turn_once_its_predecessor_landed() -> None:
    pending = [None, SessionTurn("s", 2), SessionTurn("s", 3), SessionTurn("t", 5), None]
    # s landed turn 1, t landed up to 3 (turn 4 is elsewhere): only s#2 and the others are ready.
    assert ready_turns(pending, {("", "s"): 1, ("", "t"): 3}) == [0, 1, 4]
    assert ready_turns(pending, {("", "s"): 0, ("", "t"): 4}) == [0, 3, 4]
    assert ready_turns(pending[1:3], {("", "s"): 0}) == []
    # One tenant's session "s" is not another's.
    assert ready_turns([SessionTurn("s", 2, "a"), SessionTurn("s", 2, "b")], {("a", "s"): 1}) == [0]
    assert lowest_turns(pending) == [1, 3]


def test_a_request_with_history_gets_a_call_of_its_own() -> None:
    limits = PackingLimits(
        max_items_per_call=16,
        max_input_tokens_per_call=100_000,
        max_output_tokens_per_call=8192,
        default_max_output_tokens=256,
        default_strategy="auto",
    )
    plain = [InferenceRequest(id=f"p{i}", prompt=f"q{i}", model="m") for i in range(3)]
    talk = InferenceRequest(
        id="c",
        prompt="and then?",
        model="m",
        history=(("user", ({"text": "hi"},)), ("model", ({"text": "hello"},))),
    )
    plans = plan_calls([plain[0], talk, plain[1], plain[2]], limits)
    assert [tuple(r.id for r in p.requests) for p in plans] == [("c",), ("p0", "p1", "p2")]


# --- Redis: claims, landings, rounds ------------------------------------------------------------


@pytest.fixture
def stores(redis_client: redis.Redis) -> Iterator[tuple[SessionStore, TaskStore]]:
    prefix = f"bgtest-{secrets.token_hex(4)}"
    yield SessionStore(redis_client, prefix, ttl_s=60, max_turns=6), TaskStore(redis_client, prefix, 60)


def test_turns_are_numbered_per_session_within_each_tenant(stores: tuple[SessionStore, TaskStore]) -> None:
    sessions, _ = stores
    assert [sessions.claim_turn("a", "s1", 1.0) for _ in range(3)] == [1, 2, 3]
    assert sessions.claim_turn("b", "s1", 1.0) == 1  # tenant b's own "s1": no conflict, no hint
    assert sessions.read("b", "s1")["turns_submitted"] == 1  # type: ignore[index]
    assert sessions.read("a", "s1")["turns_submitted"] == 3  # type: ignore[index]
    assert sessions.read("c", "s1") is None


def test_no_session_id_can_name_another_sessions_keys(stores: tuple[SessionStore, TaskStore]) -> None:
    sessions, _ = stores
    ids = ("zz9", "zz9:turns", "a:b:c", "x" * 128, "a\nb")
    names = [
        key
        for tenant in ("a", "b", "a\nb")
        for sid in ids
        for key in (sessions.meta_key(tenant, sid), sessions.turns_key(tenant, sid))
    ]
    assert len(set(names)) == len(names) == 30  # every (tenant, id) has two keys of its own
    assert not any(sid in key for sid in ids[:3] for key in names)  # no client text in a key name


def test_a_session_whose_state_is_unreadable_fails_only_its_own_turns(
    stores: tuple[SessionStore, TaskStore], redis_client: redis.Redis
) -> None:
    sessions, _ = stores
    sessions.claim_turn("a", "good", 1.0)
    redis_client.set(sessions.meta_key("a", "broken"), "not a hash")
    redis_client.rpush(sessions.turns_key("a", "corrupt"), "{not json")
    sessions.claim_turn("a", "corrupt", 1.0)
    with pytest.raises(SessionUnreadable):
        sessions.claim_turn("a", "broken", 1.0)
    with pytest.raises(SessionUnreadable):
        sessions.read("a", "corrupt")
    refs = [("a", "good"), ("a", "broken"), ("a", "corrupt")]
    landed, unreadable = sessions.applied(refs)
    assert landed == {("a", "good"): 0, ("a", "corrupt"): 0} and unreadable == {("a", "broken")}
    histories, unreadable = sessions.histories(refs)
    assert ("a", "good") in histories and unreadable == {("a", "corrupt")}

    rounds = ConversationRounds(sessions, 1000, order_wait_s=0.0)
    requests = [InferenceRequest(id=i, prompt=i, model="m") for i in ("plain", "ok", "bad", "bad2")]
    turns = [None, SessionTurn("good", 1, "a"), SessionTurn("broken", 1, "a"), SessionTurn("corrupt", 1, "a")]
    it = rounds.rounds(requests, turns)
    first = next(it)
    assert first.requests == [] and [r.id for r in first.unreadable] == ["bad"]
    second = next(it)
    assert [r.id for r in second.requests] == ["plain", "ok"] and [r.id for r in second.unreadable] == [
        "bad2"
    ]
    assert next(it, None) is None


def test_every_use_refreshes_the_sessions_ttl(
    stores: tuple[SessionStore, TaskStore], redis_client: redis.Redis
) -> None:
    sessions, tasks = stores  # ttl_s=60
    sessions.claim_turn("k", "s", 1.0)
    meta, turns = sessions.meta_key("k", "s"), sessions.turns_key("k", "s")
    redis_client.expire(meta, 5)
    tasks.create("t1", {}, 1.0, "k")
    landing = sessions.landing(SessionTurn("s", 1, "k"), "t1", "p", "a", 2.0)
    tasks.finish([Outcome("t1", SUCCEEDED, {"text": "a"}, None, {}, landing)], 2.0)
    assert 55 < redis_client.ttl(meta) <= 60 and 55 < redis_client.ttl(turns) <= 60
    redis_client.expire(meta, 5)
    redis_client.expire(turns, 5)
    assert sessions.read("k", "s") is not None
    assert 55 < redis_client.ttl(meta) <= 60 and 55 < redis_client.ttl(turns) <= 60
    redis_client.expire(meta, 5)
    sessions.claim_turn("k", "s", 3.0)
    assert 55 < redis_client.ttl(meta) <= 60


def test_a_turn_lands_once_with_its_answer_and_a_failure_only_advances(
    stores: tuple[SessionStore, TaskStore],
) -> None:
    sessions, tasks = stores
    for seq in (1, 2, 3):
        assert sessions.claim_turn("k", "s", 1.0) == seq
        tasks.create(f"t{seq}", {"prompt": f"p{seq}"}, 1.0, "k")

    def finish(seq: int, ok: bool) -> list[str]:
        answer = f"a{seq}" if ok else None
        landing = sessions.landing(SessionTurn("s", seq, "k"), f"t{seq}", f"p{seq}", answer, 2.0)
        outcome = Outcome(
            f"t{seq}", SUCCEEDED if ok else FAILED, {"text": answer} if ok else None, None, {}, landing
        )
        return tasks.finish([outcome], 2.0)

    assert finish(1, ok=True) == ["t1"]
    assert finish(1, ok=True) == []  # a redelivery neither rewrites the answer nor appends again
    assert finish(2, ok=False) == ["t2"]
    assert finish(3, ok=True) == ["t3"]
    session = sessions.read("k", "s")
    assert session is not None
    assert [(t["role"], t["text"], t["seq"]) for t in session["turns"]] == [
        ("user", "p1", 1),
        ("model", "a1", 1),
        ("user", "p3", 3),
        ("model", "a3", 3),
    ]
    assert session["turns_landed"] == 3


def test_a_turn_landing_after_its_session_expired_does_not_bring_it_back(
    stores: tuple[SessionStore, TaskStore], redis_client: redis.Redis
) -> None:
    sessions, tasks = stores
    for seq in (1, 2):
        sessions.claim_turn("k", "s", 1.0)
        tasks.create(f"t{seq}", {}, 1.0, "k")
    redis_client.delete(sessions.meta_key("k", "s"), sessions.turns_key("k", "s"))  # expired
    landing = sessions.landing(SessionTurn("s", 2, "k"), "t2", "p2", "a2", 2.0)
    assert tasks.finish([Outcome("t2", SUCCEEDED, {"text": "a2"}, None, {}, landing)], 2.0) == ["t2"]
    assert sessions.read("k", "s") is None  # the late answer did not recreate a half session
    # The conversation starts afresh: turn 1 again, and it lands.
    assert sessions.claim_turn("k", "s", 3.0) == 1
    tasks.create("t3", {}, 3.0, "k")
    landing = sessions.landing(SessionTurn("s", 1, "k"), "t3", "p3", "a3", 4.0)
    tasks.finish([Outcome("t3", SUCCEEDED, {"text": "a3"}, None, {}, landing)], 4.0)
    assert [t["text"] for t in sessions.read("k", "s")["turns"]] == ["p3", "a3"]  # type: ignore[index]


def test_a_failed_turn_of_an_unreadable_history_still_lets_the_next_one_run(
    stores: tuple[SessionStore, TaskStore], redis_client: redis.Redis
) -> None:
    sessions, tasks = stores
    sessions.claim_turn("k", "s", 1.0)
    sessions.claim_turn("k", "s", 1.0)
    redis_client.rpush(sessions.turns_key("k", "s"), "{not json")
    tasks.create("t1", {}, 1.0, "k")
    failed = sessions.landing(SessionTurn("s", 1, "k"), "t1", "", None, 2.0)  # as batch_job lands it
    tasks.finish([Outcome("t1", FAILED, None, {"code": "session_unreadable"}, {}, failed)], 2.0)
    landed, unreadable = sessions.applied([("k", "s")])
    assert landed == {("k", "s"): 1} and not unreadable  # turn 2 is ready at once, not in 30 s
    assert ready_turns([SessionTurn("s", 2, "k")], landed) == [0]


def test_history_is_trimmed_to_max_turns_and_clear_keeps_numbering(
    stores: tuple[SessionStore, TaskStore],
) -> None:
    sessions, tasks = stores
    for seq in range(1, 6):
        sessions.claim_turn("k", "s", 1.0)
        tasks.create(f"t{seq}", {}, 1.0, "k")
        landing = sessions.landing(SessionTurn("s", seq, "k"), f"t{seq}", f"p{seq}", f"a{seq}", 2.0)
        tasks.finish([Outcome(f"t{seq}", SUCCEEDED, {"text": "x"}, None, {}, landing)], 2.0)
    turns = sessions.read("k", "s")["turns"]  # type: ignore[index]
    assert [t["text"] for t in turns] == ["p3", "a3", "p4", "a4", "p5", "a5"]  # max_turns=6
    assert not sessions.clear("other", "s")
    assert sessions.clear("k", "s")
    assert sessions.read("k", "s")["turns"] == []  # type: ignore[index]
    assert sessions.claim_turn("k", "s", 3.0) == 6


def test_rounds_wait_for_a_predecessor_elsewhere_then_give_up_at_the_deadline(
    stores: tuple[SessionStore, TaskStore], redis_client: redis.Redis
) -> None:
    sessions, _ = stores
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    rounds = ConversationRounds(sessions, 1000, order_wait_s=1.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        sessions.claim_turn("k", "s", 0.0)  # turn 1 is "on another worker" and never lands
    requests = [
        InferenceRequest(id="x", prompt="plain", model="m"),
        InferenceRequest(id="b", prompt="turn 2", model="m"),
        InferenceRequest(id="c", prompt="turn 3", model="m"),
    ]
    turns = [None, SessionTurn("s", 2, "k"), SessionTurn("s", 3, "k")]
    it = rounds.rounds(requests, turns)
    assert [r.id for r in next(it).requests] == ["x"]  # the plain request does not wait
    assert [r.id for r in next(it).requests] == ["b"]  # after the deadline, in order
    assert 1.0 <= now[0] < 1.1 and slept
    redis_client.hset(sessions.meta_key("k", "s"), "applied", 2)  # turn 2 landed
    assert [r.id for r in next(it).requests] == ["c"]
    assert next(it, None) is None
