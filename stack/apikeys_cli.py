"""``python -m stack.apikeys_cli create|list|revoke``: manage API keys (``make apikey``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import redis

from batchgate.apikeys import TIERS, ApiKeyError, ApiKeyStore
from batchgate.settings import Settings
from batchgate.tenants import own_tenant
from stack.programs import redacted_url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.apikeys_cli", description="batchgate API keys")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it (one line)")
    create.add_argument("--tier", choices=TIERS, default="free")
    create.add_argument("--label", default="")
    create.add_argument(
        "--tenant", default=None, help="the tenant the key belongs to (created if new); default: its own"
    )
    commands.add_parser("list", help="list keys: hash prefix, tier, tenant, label, created")
    revoke = commands.add_parser("revoke", help="revoke a key, by the key or a hash prefix")
    revoke.add_argument("reference")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    store = ApiKeyStore(
        redis.Redis.from_url(settings.broker.redis_url, decode_responses=True), settings.broker.key_prefix
    )
    try:
        if args.command == "create":
            print(store.create(args.tier, args.label, tenant=args.tenant or None))
        elif args.command == "list":
            for key in store.list():
                created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(key.created_at))
                tenant = "(own)" if key.tenant == own_tenant(key.key_hash) else key.tenant
                print(f"{key.key_hash[:12]}  {key.tier:<8} {tenant:<20} {created}Z  {key.label}")
        else:
            revoked = store.revoke(args.reference)
            print(f"revoked {revoked.key_hash[:12]} ({revoked.tier})")
    except ApiKeyError as exc:
        print(f"batchgate: {exc}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(
            f"batchgate: Redis at {redacted_url(settings.broker.redis_url)} is not reachable: {exc}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
