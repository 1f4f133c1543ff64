"""API keys are stored as hashes only, listed, looked up and revoked."""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest
import redis

from batchgate.apikeys import ApiKeyError, ApiKeyStore, hash_key
from batchgate.tenants import own_tenant
from tests.harness import REPO, clean_env


def test_keys_are_stored_only_as_hashes(redis_client: redis.Redis) -> None:
    prefix = f"keys-{secrets.token_hex(4)}"
    store = ApiKeyStore(redis_client, prefix)
    key = store.create("basic", "ci")
    assert key.startswith("bg_") and len(key) > 40
    everything = [(k, redis_client.dump(k)) for k in redis_client.scan_iter(f"{prefix}:*")]
    assert everything and all(key.encode() not in (k.encode() + (v or b"")) for k, v in everything)
    found = store.lookup(key)
    assert found is not None and found.tier == "basic" and found.key_hash == hash_key(key)
    assert store.lookup(key + "x") is None


def test_list_and_revoke(redis_client: redis.Redis) -> None:
    store = ApiKeyStore(redis_client, f"keys-{secrets.token_hex(4)}")
    first, second = store.create("free"), store.create("premium", "ops")
    assert [k.tier for k in store.list()] == ["free", "premium"]
    store.revoke(hash_key(first)[:12])
    assert store.lookup(first) is None and store.lookup(second) is not None
    store.revoke(second)
    assert store.list() == []
    with pytest.raises(ApiKeyError):
        store.revoke("abc")
    with pytest.raises(ApiKeyError):
        store.create("platinum")


def test_cli_prints_exactly_one_line_a_working_key(redis_client: redis.Redis, redis_url: str) -> None:
    env = clean_env(BATCHGATE_REDIS_URL=redis_url, BATCHGATE_KEY_PREFIX=f"keys-{secrets.token_hex(4)}")
    command = [sys.executable, "-m", "stack.apikeys_cli"]
    created = subprocess.run(
        [*command, "create", "--tier", "free"], env=env, capture_output=True, text=True, cwd=REPO
    )
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bg_")
    store = ApiKeyStore(redis_client, env["BATCHGATE_KEY_PREFIX"])
    assert store.lookup(lines[0]) is not None
    listed = subprocess.run([*command, "list"], env=env, capture_output=True, text=True, cwd=REPO)
    assert hash_key(lines[0])[:12] in listed.stdout and " free " in listed.stdout
    revoked = subprocess.run(
        [*command, "revoke", lines[0]], env=env, capture_output=True, text=True, cwd=REPO
    )
    assert revoked.returncode == 0 and store.lookup(lines[0]) is None


def test_a_key_is_its_own_tenant_unless_created_in_a_named_one(redis_client: redis.Redis) -> None:
    store = ApiKeyStore(redis_client, f"keys-{secrets.token_hex(4)}")
    alone = store.create("free")
    first, second = store.create("premium", tenant="acme"), store.create("free", tenant="acme")
    assert store.lookup(alone).tenant == own_tenant(hash_key(alone))  # type: ignore[union-attr]
    assert {store.lookup(k).tenant for k in (first, second)} == {"acme"}  # type: ignore[union-attr]
    assert list(store.tenants()) == ["acme"]
    for bad in ("Acme", "key:abc", "a b", "", "x" * 65, "../etc"):
        with pytest.raises(ApiKeyError):
            store.create("free", tenant=bad)


def test_cli_creates_a_key_in_a_tenant(redis_client: redis.Redis, redis_url: str) -> None:
    env = clean_env(BATCHGATE_REDIS_URL=redis_url, BATCHGATE_KEY_PREFIX=f"keys-{secrets.token_hex(4)}")
    command = [sys.executable, "-m", "stack.apikeys_cli"]
    created = subprocess.run(
        [*command, "create", "--tier", "basic", "--tenant", "acme"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    found = ApiKeyStore(redis_client, env["BATCHGATE_KEY_PREFIX"]).lookup(key)
    assert found is not None and (found.tier, found.tenant) == ("basic", "acme")
    listed = subprocess.run([*command, "list"], env=env, capture_output=True, text=True, cwd=REPO)
    assert " acme " in listed.stdout
    refused = subprocess.run(
        [*command, "create", "--tenant", "Not Valid"], env=env, capture_output=True, text=True, cwd=REPO
    )
    assert refused.returncode == 2 and "tenant" in refused.stderr and not refused.stdout
