"""API keys, their tiers and tenants, stored in Redis as hashes of the key, never the key itself.

A key is ``bg_`` + 32 random bytes (url-safe). Its SHA-256 names a hash
``<prefix>:apikey:<sha256>`` holding the tier, the tenant (absent: the key is its own
tenant, ``batchgate.tenants.own_tenant``), a label and the creation time; the set
``<prefix>:apikeys`` lists the hashes so keys can be listed and revoked, and the hash
``<prefix>:tenants`` lists the named tenants with their creation time.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis

from batchgate import keys as key_names
from batchgate.tenants import check_name, own_tenant

TIERS = ("free", "basic", "premium")
KEY_PREFIX = "bg_"


class ApiKeyError(ValueError):
    """A tier or key reference that cannot be used."""


@dataclass(frozen=True)
class ApiKey:
    """What the API knows of a caller: the key's hash (its identity), its tier and tenant."""

    key_hash: str
    tier: str
    label: str = ""
    created_at: float = 0.0
    #: The tenant the key belongs to (``own_tenant(key_hash)`` unless created in a named one).
    tenant: str = ""


def hash_key(key: str) -> str:
    """The identity under which a key is stored and its tasks are owned."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKeyStore:
    """Creates, looks up, lists and revokes keys."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix

    def record_key(self, key_hash: str) -> str:
        """The Redis hash holding the key with this hash (read by the admission script too)."""
        return key_names.api_key(self._prefix, key_hash)

    @property
    def _index(self) -> str:
        return key_names.api_keys(self._prefix)

    @property
    def _tenants(self) -> str:
        return key_names.tenants(self._prefix)

    def create(self, tier: str, label: str = "", key: str | None = None, tenant: str | None = None) -> str:
        """Store a new key (or the given one) with ``tier``, in ``tenant`` (created if new; None:
        the key is its own tenant); return the key itself, shown once."""
        if tier not in TIERS:
            raise ApiKeyError(f"unknown tier {tier!r}; choose one of {', '.join(TIERS)}")
        if tenant is not None:
            try:
                check_name(tenant)
            except ValueError as exc:
                raise ApiKeyError(str(exc)) from None
        key = key or new_key()
        key_hash = hash_key(key)
        now = repr(time.time())
        fields = {"tier": tier, "label": label, "created_at": now}
        if tenant is not None:
            fields["tenant"] = tenant
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self.record_key(key_hash), mapping=fields)  # type: ignore[arg-type]
        pipe.sadd(self._index, key_hash)
        if tenant is not None:
            pipe.hsetnx(self._tenants, tenant, now)
        pipe.execute()
        return key

    def tenants(self) -> dict[str, float]:
        """The named tenants and when each was created."""
        return {_text(k): float(_text(v)) for k, v in self._redis.hgetall(self._tenants).items()}

    def lookup(self, key: str) -> ApiKey | None:
        """The stored key for ``key``, or None if unknown or revoked."""
        key_hash = hash_key(key)
        return self.parse(key_hash, self._redis.hgetall(self.record_key(key_hash)))

    @staticmethod
    def parse(key_hash: str, raw: Any) -> ApiKey | None:
        """The key from its raw hash (``HGETALL`` of ``record_key``), or None if there is none."""
        fields = _texts(raw)
        return _parse(key_hash, fields) if fields else None

    def list(self) -> list[ApiKey]:
        """Every stored key (hashes only), oldest first."""
        hashes = sorted(_text(h) for h in self._redis.smembers(self._index))
        pipe = self._redis.pipeline(transaction=False)
        for key_hash in hashes:
            pipe.hgetall(self.record_key(key_hash))
        found = [_parse(h, _texts(f)) for h, f in zip(hashes, pipe.execute(), strict=True) if f]
        return sorted(found, key=lambda k: k.created_at)

    def revoke(self, reference: str) -> ApiKey:
        """Revoke by the key itself or by a unique prefix (8+ characters) of its hash."""
        candidates = {hash_key(reference)} if reference.startswith(KEY_PREFIX) else set()
        if not candidates:
            if len(reference) < 8:
                raise ApiKeyError("give the key or at least 8 characters of its hash")
            members = (_text(h) for h in self._redis.smembers(self._index))
            candidates = {h for h in members if h.startswith(reference)}
        if len(candidates) != 1:
            raise ApiKeyError(f"{len(candidates)} keys match {reference!r}")
        key_hash = candidates.pop()
        fields = _texts(self._redis.hgetall(self.record_key(key_hash)))
        if not fields:
            raise ApiKeyError("no such key")
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self.record_key(key_hash))
        pipe.srem(self._index, key_hash)
        pipe.execute()
        return _parse(key_hash, fields)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _texts(fields: Any) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in dict(fields or {}).items()}


def _parse(key_hash: str, fields: dict[str, str]) -> ApiKey:
    return ApiKey(
        key_hash=key_hash,
        tier=fields.get("tier", "free"),
        label=fields.get("label", ""),
        created_at=float(fields.get("created_at") or 0),
        tenant=fields.get("tenant") or own_tenant(key_hash),
    )
