"""The longer documents some corpus prompts work on: a diff, logs, a ticket thread, a design
document and a module, so that requests run from a line to a few thousand characters."""

from __future__ import annotations

DIFF = """\
--- a/billing/invoice.py
+++ b/billing/invoice.py
@@ -41,12 +41,19 @@ class InvoiceBuilder:
     def add_line(self, sku, qty, unit_price):
-        self.lines.append((sku, qty, unit_price))
+        if qty <= 0:
+            return
+        price = unit_price * qty
+        if self.customer.discount:
+            price = price - price * self.customer.discount / 100
+        self.lines.append((sku, qty, round(price, 2)))

     def total(self):
-        return sum(q * p for _, q, p in self.lines)
+        total = 0
+        for line in self.lines:
+            total += line[2]
+        return total
"""

LOG = """\
2025-03-02T10:14:07Z api-2 ERROR upstream timed out (110: Connection timed out) while reading response header
2025-03-02T10:14:07Z api-2 WARN  retrying POST /v2/orders on api-3
2025-03-02T10:14:09Z db-primary LOG  duration: 8123.441 ms  statement: SELECT * FROM orders WHERE customer_id = $1
2025-03-02T10:14:09Z db-primary LOG  checkpoints are occurring too frequently (9 seconds apart)
2025-03-02T10:14:12Z api-3 ERROR pool exhausted: 50/50 connections in use, 212 waiting
2025-03-02T10:14:15Z worker-1 INFO  reindex job orders_by_customer started (batch 14/90)
2025-03-02T10:14:31Z api-1 ERROR upstream timed out (110: Connection timed out) while reading response header
"""

TICKET_THREAD = [
    {
        "from": "customer",
        "text": "Since the upgrade to 4.2 our nightly export to S3 fails with 'AccessDenied' on "
        "about one file in twenty. Nothing changed on our side. We rely on this for payroll.",
    },
    {
        "from": "agent",
        "text": "Thanks, could you send the bucket policy and the export job id of a failing run?",
    },
    {
        "from": "customer",
        "text": "Job id exp-88213. Policy attached. The failing files are always the ones larger "
        "than 5 GB, if that helps. Smaller ones go through.",
    },
    {
        "from": "agent",
        "text": "4.2 switched large uploads to multipart; that needs s3:ListMultipartUploadParts "
        "and s3:AbortMultipartUpload, which the attached policy does not grant.",
    },
]

DESIGN_DOC = """\
Design: per-tenant rate limiting for the public API

Problem. All tenants share one global limit of 2,000 requests per second at the edge. A single
tenant running a bulk import in March consumed 70 % of it for forty minutes, and interactive
users of other tenants saw 429 answers. Support opened 212 tickets that afternoon.

Goals. Each tenant gets its own budget, expressed as a sustained rate and a burst. Limits are
enforced identically by every API replica. A decision costs at most one round trip to the
shared store. Tenants can see their remaining budget in response headers. Operators can
change a tenant's limits without a deploy.

Non-goals. Cost-based limiting (weighting expensive endpoints more) is left for later, as is
limiting by user within a tenant.

Proposal. A token bucket per tenant, kept in Redis as a hash with the token count and the
time of the last refill, updated by one Lua script that refills, decides and writes in one
call. The script also returns the tokens left and the seconds until the bucket is full, for
the X-RateLimit-Remaining and X-RateLimit-Reset headers. Tiers (free, team, enterprise) give
default rates; a per-tenant override hash takes precedence when present.

Alternatives considered. A fixed window counter is cheaper but lets a tenant send twice its
limit across a window boundary. A sliding log is exact but stores one entry per request,
which at our volume is 40 GB of Redis memory. Limiting at the load balancer cannot see the
tenant, which is only known after the API key is resolved.

Rollout. Shadow mode first: the script decides but the API only logs what it would have
refused, for two weeks, so that defaults can be tuned on real traffic. Then enforcement for
the free tier, then for everyone. A kill switch falls back to the global limit.

Risks. Redis becomes a dependency of every request; if it is unreachable the API must fail
open (admit) rather than refuse everything, and alert. Clock skew between replicas does not
matter because the script uses Redis's own TIME.

Open questions. Should the burst of the enterprise tier be configurable per contract? Do we
expose limits in the dashboard from day one?
"""

MODULE = """\
import json, os, time, requests

CACHE = {}

def fetch_rates(base, symbols, retries=3):
    key = base + ",".join(symbols)
    if key in CACHE and time.time() - CACHE[key][0] < 60:
        return CACHE[key][1]
    url = os.environ["RATES_URL"] + "/rates?base=" + base + "&symbols=" + ",".join(symbols)
    for i in range(retries):
        try:
            r = requests.get(url)
            data = json.loads(r.text)
            CACHE[key] = (time.time(), data["rates"])
            return data["rates"]
        except Exception:
            time.sleep(2 ** i)
    return {}

def convert(amount, frm, to):
    rates = fetch_rates(frm, [to])
    return amount * rates[to]

def convert_all(amounts, frm, to):
    out = []
    for a in amounts:
        out.append(convert(a, frm, to))
    return out

def report(rows, currency):
    total = 0
    for row in rows:
        total = total + convert(row["amount"], row["currency"], currency)
    print("Total in " + currency + ": " + str(round(total, 2)))
    return total
"""
