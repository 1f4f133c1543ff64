"""``python -m api.budget_cli``: set a tenant's (or key's) monthly budget, and show usage.

``make budget TENANT=<name> TOKENS=<n>`` (or ``USD=<amount>``, ``KEY=<key hash>`` for one key
of the tenant; neither TOKENS nor USD removes the limit) and ``make usage`` (every tenant's
usage this month, with its budgets: the operator's view across tenants).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import redis

from batchgate.budgets import BudgetBook, spent_fields, states
from batchgate.settings import Settings
from batchgate.usage_store import UsageQuery, UsageStore, month_of


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m api.budget_cli", description="batchgate budgets and usage"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    budget = commands.add_parser("budget", help="set a tenant's or one key's monthly budget")
    budget.add_argument("--tenant", required=True)
    budget.add_argument("--tokens", type=int, default=None, help="input + output tokens a month")
    budget.add_argument("--usd", type=float, default=None, help="USD a month")
    budget.add_argument("--key", default=None, help="the hash of one key of the tenant (its own limit)")
    commands.add_parser("usage", help="every tenant's usage this month (UTC), with its budgets")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    client = redis.Redis.from_url(settings.broker.redis_url, decode_responses=True)
    prefix = settings.broker.key_prefix
    book, usage = BudgetBook(client, prefix), UsageStore(client, prefix)
    if args.command == "budget":
        if (args.tokens is not None and args.tokens < 0) or (args.usd is not None and args.usd < 0):
            parser.error("a budget is >= 0")
        book.set(args.tenant, tokens=args.tokens, usd=args.usd, key=args.key)
        print(json.dumps({"tenant": args.tenant, "limits": [vars(x) for x in book.limits(args.tenant)]}))
        return 0
    today = datetime.now(UTC).date()
    tenants = sorted(set(usage.tenants(month_of(time.time()))) | set(book.tenants()))
    for tenant in tenants:
        body = usage.query(UsageQuery(tenant, today.replace(day=1), today))
        limits = book.limits(tenant)
        body["budgets"] = [s.body() for s in states(limits, usage.month(tenant, spent_fields(limits)))]
        print(json.dumps({"tenant": tenant, **body}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
