"""Keep Gemini's implicit prompt cache to one tenant: every call opens with its tenant's scope.

Gemini caches the start of recent prompts per project (one API key serves every tenant
here) and bills a call's repeated start at the cached rate, reporting it as
``cachedContentTokenCount``. Shared across tenants, that cache would tell one tenant that
another sent the same long text lately (its own call comes back cheaper, and faster), and
bill one tenant less for another's work. So every call starts with a line naming its
tenant's scope, before the system text: calls of one tenant still share their prefixes (the
layout keeps what repeats first: scope, system text, the packing instruction, functions,
then the items), calls of two tenants never share a single cached token.

Every call, not only long ones: what makes a call long (an inline document, a function's
result, text that takes more tokens than its length suggests) is not reliably known before
Gemini counts it, and a call left unscoped could be matched by another tenant who writes the
scope line into its own system text. The line costs about ten input tokens a call. The scope
is a digest of the tenant's name; naming another tenant's scope inside a prompt gains
nothing, since the caller's own scope line always comes first. An operator who lets tenants
share calls (``PackingLimits.share_calls_across_tenants``) shares this cache too.
"""

from __future__ import annotations

import dataclasses
import hashlib

from batching.packing import PackingLimits
from batching.types import ModelCall


def scope_line(tenant: str) -> str:
    """The first line of every call of a tenant."""
    return f"[cache scope {hashlib.sha256(tenant.encode()).hexdigest()[:16]}]"


def scoped(call: ModelCall, tenant: str, limits: PackingLimits) -> ModelCall:
    """``call`` with its tenant's scope line opening the system text."""
    if not tenant or limits.share_calls_across_tenants:
        return call
    line = scope_line(tenant)
    return dataclasses.replace(call, system=f"{line}\n\n{call.system}" if call.system else line)
