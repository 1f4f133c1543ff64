"""Tenants: who may share a model call, a cache entry and a session namespace.

Every API key belongs to one tenant. A key created without a tenant is its own tenant,
``key:<sha256 of the key>``; named tenants (``make apikey TENANT=acme``) are lower-case
names without ``:``, so a name can never be mistaken for a key's own tenant. Callers without
a key (``BATCHGATE_AUTH_ENABLED=false``) are one tenant per client address, ``ip:<address>``.

Redis keys that hold a tenant's data end with the tenant id, or with a fixed-length digest
after it, so no two tenants' keys can alias one another.
"""

from __future__ import annotations

import re

from batchgate import keys as key_names

#: A named tenant: 1 to 64 of lower-case letters, digits, ``.``, ``_`` and ``-``.
TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class TenantNameError(ValueError):
    """A tenant name that cannot be used."""


def check_name(name: str) -> str:
    """``name`` when it is a valid tenant name, else ``TenantNameError``."""
    if not TENANT_NAME.match(name):
        raise TenantNameError(
            f"tenant {name!r}: use 1 to 64 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
        )
    return name


#: A tenant as it travels: a name, ``key:<sha256 hex>`` or ``ip:<address>``.
TENANT_ID = re.compile(r"^(?:[a-z0-9][a-z0-9._-]{0,63}|key:[0-9a-f]{64}|ip:\S{1,64})$")


def own_tenant(key_hash: str) -> str:
    """The tenant of a key created without one: the key alone."""
    return f"key:{key_hash}"


def anonymous_tenant(address: str) -> str:
    """The tenant of a caller without a key (authentication off): its client address."""
    return f"ip:{address}"


def inflight_prefix(prefix: str) -> str:
    """Prefix of each tenant's sorted set of unfinished task ids (``<this><tenant>``)."""
    return key_names.tenant_inflight_prefix(prefix)


def inflight_key(prefix: str, tenant: str) -> str:
    """The tenant's unfinished task ids, scored by admission time (milliseconds)."""
    return inflight_prefix(prefix) + tenant
