"""The corpus itself: realistic agent prompts of varied length, by kind of work.

The mix is what agent frameworks send a model: tool-use plans, ticket summaries, field
extraction as JSON, code review, SQL from a question, classification, drafting, log triage.
No prompt contains one of the cache-bypass words (``now``, ``today``, ``latest``, …), so a
repeated request is a cache hit, and none contains the simulator's poison marker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loadtest.corpus_documents import DESIGN_DOC, DIFF, LOG, MODULE, TICKET_THREAD


@dataclass(frozen=True)
class CorpusItem:
    """One agent request: what kind of work it is, its prompt, and its optional context."""

    kind: str
    prompt: str
    context: dict[str, Any] | None = field(default=None)

    def body(self) -> dict[str, Any]:
        """The request body fields this item contributes (``prompt`` and ``context``)."""
        body: dict[str, Any] = {"prompt": self.prompt}
        if self.context is not None:
            body["context"] = dict(self.context)
        return body


CORPUS: tuple[CorpusItem, ...] = (
    # --- tool-use planning ---------------------------------------------------------------
    CorpusItem(
        "plan",
        "You can call these tools: search_flights(origin, destination, date), "
        "book_hotel(city, check_in, nights, max_price), get_weather(city, date). "
        "The user wants a three-day trip from Lisbon to Copenhagen starting 14 May with a hotel under "
        "180 EUR a night. List the tool calls you would make, in order, with their arguments, as JSON.",
    ),
    CorpusItem(
        "plan",
        "Break the goal 'migrate the reporting service from MySQL 5.7 to PostgreSQL 16 without "
        "downtime' into at most eight steps. For each step give the owner role and the check that "
        "proves it is done.",
    ),
    CorpusItem(
        "plan",
        "Available tools: read_file(path), run_tests(pattern), edit_file(path, patch), "
        "open_pull_request(title, body). The failing test is tests/test_invoice.py::test_discount. "
        "Plan the next three tool calls to fix it and say what you expect each to return.",
    ),
    CorpusItem(
        "plan",
        "Decide which single tool to call next and with which arguments. Tools: "
        "lookup_order(order_id), refund(order_id, amount, reason), escalate(ticket_id, team).",
        {
            "conversation": "Customer: my order 55120 arrived broken, I want my money back.",
            "order": {"id": 55120, "total": 74.9, "status": "delivered", "days_since_delivery": 3},
            "policy": "Refunds up to 100 EUR within 14 days of delivery need no approval.",
        },
    ),
    CorpusItem(
        "plan",
        "You are orchestrating three sub-agents: researcher, writer and fact-checker. Write the "
        "messages you would send to each to produce a 600-word explainer on heat pumps for "
        "homeowners, including what each must hand back and in which format.",
    ),
    CorpusItem(
        "plan",
        "Given the calendar below, propose two 45-minute slots next week when all three people "
        "are free, preferring mornings. Return the slots as ISO 8601 intervals.",
        {
            "calendars": {
                "ana": ["Mon 09:00-12:00", "Tue 13:00-17:00", "Thu 09:00-10:00"],
                "bruno": ["Mon 14:00-15:00", "Wed 09:00-11:30", "Thu 10:00-12:00"],
                "chen": ["Tue 09:00-10:30", "Wed 14:00-18:00", "Fri 09:00-12:00"],
            },
            "timezone": "Europe/Berlin",
        },
    ),
    # --- summarising tickets and threads ----------------------------------------------------
    CorpusItem(
        "summarise",
        "Summarise this support thread in two sentences for the next agent on shift, then "
        "state the next action.",
        {"ticket": "SUP-20931", "thread": TICKET_THREAD},
    ),
    CorpusItem("summarise", "Summarise the ticket in one line: printer on floor 3 jams on A3 paper."),
    CorpusItem(
        "summarise",
        "Summarise this design document for an engineering-wide review: the problem, the proposal, "
        "the main risk and the open questions, in at most 120 words.",
        {"document": DESIGN_DOC, "author": "platform team"},
    ),
    CorpusItem(
        "summarise",
        "Write a one-paragraph incident summary for the status page from these notes. Do not "
        "mention internal host names.",
        {
            "notes": [
                "10:02 alerts: checkout p99 above 4 s",
                "10:09 traced to connection pool exhaustion on api tier after a config push",
                "10:21 rolled back pool size change; latency back to normal by 10:26",
                "impact: about 6 % of checkouts failed between 10:02 and 10:24",
            ]
        },
    ),
    CorpusItem(
        "summarise",
        "Summarise the customer's complaint and their emotional state, each in at most 15 words.",
        {
            "message": "This is the third time I'm writing. The app logs me out every few minutes "
            "and I lose my draft each time. I've been a subscriber for six years and I'm close "
            "to cancelling. Please just tell me whether anyone is looking at this."
        },
    ),
    CorpusItem(
        "summarise",
        "Condense these meeting notes into decisions, open questions and action items with owners.",
        {
            "notes": "Agreed to ship the search filters behind a flag on the 20th. Marta worries "
            "the index rebuild takes too long on the EU cluster; Joe will measure it on a copy. "
            "Nobody knows if legal signed off on storing query logs for 90 days; Priya asks them. "
            "Design review of the mobile layout moved to Thursday. Budget for the extra replicas "
            "is approved up to 1,200 EUR a month."
        },
    ),
    CorpusItem(
        "summarise",
        "Give a three-bullet TL;DR of this pull request description for a busy reviewer.",
        {
            "description": "This PR replaces the hand-rolled retry loop in the payment client with "
            "a small policy object (exponential backoff with jitter, capped at 8 s, honouring "
            "Retry-After). It also adds idempotency keys to every POST so that retries are safe, "
            "and a test double for the payment provider that can inject 429 and 503 answers. "
            "Behaviour change: we give up after 5 attempts instead of retrying forever."
        },
    ),
    # --- extraction as JSON --------------------------------------------------------------------
    CorpusItem(
        "extract",
        "Extract the fields vendor, invoice_number, issue_date (ISO 8601), currency and total as "
        "JSON from this invoice text. Use null for a field that is absent.",
        {
            "text": "NORDIC OFFICE SUPPLY AB — Faktura nr 2024-1187 — Datum 3 mars 2024 — "
            "12 x Toner HP 59A à 890,00 SEK — Moms 25 % — Att betala 13 350,00 SEK"
        },
    ),
    CorpusItem(
        "extract",
        "Return JSON with keys name, email, company and intent (one of: demo, pricing, support, "
        "other) for this inbound message: 'Hi, I'm Dana Whitfield from Larkspur Logistics "
        "(dana.w@larkspur-log.com). We have 40 drivers and want to see how route planning works "
        "before our budget meeting.'",
    ),
    CorpusItem(
        "extract",
        "Extract every date, amount and party mentioned in this contract clause as a JSON list of "
        "{type, value, quoted_text}.",
        {
            "clause": "The Licensee shall pay the Licensor a one-time fee of USD 25,000 no later "
            "than 30 June 2025, and thereafter an annual maintenance fee of 18 % of the one-time "
            "fee, payable on each anniversary of the Effective Date (1 July 2025)."
        },
    ),
    CorpusItem(
        "extract",
        "Parse this address into JSON (street, number, postcode, city, country code): "
        "'Rua das Flores 112, 2º Esq., 4050-265 Porto, Portugal'.",
    ),
    CorpusItem(
        "extract",
        "From the job posting, extract title, seniority, location, remote_policy, salary_min, "
        "salary_max and required_skills (list) as JSON.",
        {
            "posting": "Senior Data Engineer (m/f/d) — Hamburg or remote within Germany. You will "
            "own our Kafka-to-Snowflake pipelines. Must have: Python, SQL, Airflow, dbt. Nice to "
            "have: Terraform. Salary band 78,000-95,000 EUR."
        },
    ),
    CorpusItem(
        "extract",
        "Extract the medication, dose, frequency and duration from: 'Amoxicillin 500 mg, one "
        "capsule three times a day for seven days, with food.' Answer as JSON.",
    ),
    CorpusItem(
        "extract",
        "List every product and quantity the customer wants, as JSON [{sku_hint, quantity}].",
        {
            "email": "Could you send us another 3 boxes of the blue nitrile gloves (size M), two "
            "of the 5 L hand sanitiser refills and a dozen of those yellow wet-floor signs? Same "
            "delivery address as last time. Thanks, Tomasz"
        },
    ),
    # --- code review ------------------------------------------------------------------------------
    CorpusItem(
        "review",
        "Review this diff. Write at most five review comments, each with the line it refers to, "
        "the problem and a concrete fix. Focus on correctness, not style.",
        {"diff": DIFF, "language": "python"},
    ),
    CorpusItem(
        "review",
        "Is this function safe to call from several threads at once? Answer yes or no and explain "
        "in two sentences.\n\n"
        "_cache = {}\n"
        "def get_user(uid):\n"
        "    if uid not in _cache:\n"
        "        _cache[uid] = db.fetch_user(uid)\n"
        "    return _cache[uid]",
    ),
    CorpusItem(
        "review",
        "Suggest a clearer name for each of these identifiers and say why in a few words: "
        "tmp2, doStuff, data_list_final, flag, handleIt, mgr.",
    ),
    CorpusItem(
        "review",
        "Review this SQL migration for locking problems on a 200-million-row table and propose a "
        "safer sequence of statements.",
        {
            "migration": "ALTER TABLE events ADD COLUMN tenant_id bigint NOT NULL DEFAULT 0;\n"
            "CREATE INDEX events_tenant_idx ON events (tenant_id);\n"
            "UPDATE events SET tenant_id = accounts.tenant_id FROM accounts "
            "WHERE events.account_id = accounts.id;",
            "database": "PostgreSQL 15",
        },
    ),
    CorpusItem(
        "review",
        "Review this module as a senior engineer. List the problems (error handling, timeouts, "
        "caching, performance, testability) in order of importance, each with a one-line fix. "
        "Answer as a JSON list of {line_hint, problem, fix}.",
        {"file": "fx/rates.py", "source": MODULE},
    ),
    CorpusItem(
        "review",
        "Write a short, kind review comment asking the author to add a test for the empty-list "
        "case of merge_intervals().",
    ),
    CorpusItem(
        "review",
        "Find the bug: the function should return the median of a list of numbers.\n\n"
        "def median(xs):\n"
        "    xs.sort()\n"
        "    n = len(xs)\n"
        "    return xs[n // 2] if n % 2 else (xs[n // 2] + xs[n // 2 + 1]) / 2",
    ),
    # --- SQL from a question --------------------------------------------------------------------
    CorpusItem(
        "sql",
        "Write one PostgreSQL query answering: which five customers spent the most in March 2024, "
        "with their total and number of orders?",
        {
            "schema": {
                "customers": ["id", "name", "country"],
                "orders": ["id", "customer_id", "created_at", "status"],
                "order_lines": ["order_id", "sku", "quantity", "unit_price"],
            },
            "note": "Only orders with status 'paid' count.",
        },
    ),
    CorpusItem(
        "sql",
        "Translate to SQL: for each product category, the share of returned items in 2023, "
        "highest first. Tables: items(id, category), sales(item_id, sold_at, returned boolean).",
    ),
    CorpusItem(
        "sql",
        "Write a query that finds users who signed up but never created a project within 7 days of "
        "signing up. Tables: users(id, signed_up_at), projects(id, owner_id, created_at). Use a "
        "NOT EXISTS subquery.",
    ),
    CorpusItem(
        "sql",
        "Explain in plain English what this query returns, in one sentence: SELECT d.name, "
        "AVG(e.salary) FROM departments d JOIN employees e ON e.dept_id = d.id GROUP BY d.name "
        "HAVING COUNT(*) > 10 ORDER BY 2 DESC;",
    ),
    CorpusItem(
        "sql",
        "Write a BigQuery query computing weekly active users per platform over the last 12 complete "
        "weeks from the table analytics.events(user_id, platform, event_time).",
    ),
    # --- classification and routing ------------------------------------------------------------
    CorpusItem(
        "classify",
        "Classify the message into exactly one of: billing, bug, feature_request, account_access, "
        "other. Answer with the label only.",
        {"message": "I was charged twice for the annual plan, can you refund one of them?"},
    ),
    CorpusItem(
        "classify",
        "Rate the sentiment of each review from -2 to 2 and return a JSON list of integers.",
        {
            "reviews": [
                "Arrived a day early and works perfectly.",
                "The strap broke after a week.",
                "It's fine. Does what it says.",
                "Customer service never answered my three emails.",
            ]
        },
    ),
    CorpusItem(
        "classify",
        "Which team should own this alert: networking, storage, database or application? Give the "
        "team and a one-sentence reason.",
        {"alert": "Disk usage on /var/lib/postgresql above 92 % on db-replica-2 for 15 minutes"},
    ),
    CorpusItem(
        "classify",
        "Does this text contain personal data under the GDPR? Answer yes or no, then list the items.",
        {"text": "Please ship to Jan Kowalski, ul. Długa 5, Gdańsk; call +48 601 234 567 if needed."},
    ),
    # --- drafting -------------------------------------------------------------------------------
    CorpusItem(
        "draft",
        "Draft a polite reply to the customer explaining that the refund was issued and will "
        "appear in 5 to 7 business days. Keep it under 80 words.",
        {"customer_name": "Ms Okafor", "order": "A-44120", "amount": "59.00 EUR"},
    ),
    CorpusItem(
        "draft",
        "Write a commit message (subject under 60 characters, then a short body) for a change that "
        "caps retry backoff at 8 seconds and honours the server's Retry-After header.",
    ),
    CorpusItem(
        "draft",
        "Write release notes for version 2.3 aimed at end users, from this changelog. Group into "
        "New, Improved and Fixed; skip internal changes.",
        {
            "changelog": [
                "feat: export reports as XLSX",
                "chore: bump eslint to 9",
                "fix: time zone shown wrongly in weekly digest emails",
                "perf: dashboard loads 40 % faster for accounts with many projects",
                "refactor: split billing module",
                "fix: password reset link expired after 5 minutes instead of 60",
            ]
        },
    ),
    CorpusItem("draft", "Suggest three subject lines for a newsletter about spring gardening workshops."),
    # --- log triage -----------------------------------------------------------------------------
    CorpusItem(
        "triage",
        "Read these log lines and give the most likely root cause, the evidence for it, and the "
        "first thing to check. Be brief.",
        {"logs": LOG, "service": "orders-api"},
    ),
    CorpusItem(
        "triage",
        "A Kubernetes pod restarts every few minutes with exit code 137 and the event "
        "'OOMKilled'. Its memory limit is 512Mi and the JVM runs with -Xmx512m. What is wrong and "
        "how should the settings be changed?",
    ),
    CorpusItem(
        "triage",
        "Given this stack trace, say which line of our code is at fault and why.",
        {
            "trace": '  File "app/handlers.py", line 88, in '
            "create_order\n    total = sum(line.price for line in order.lines)\n  File "
            '"app/handlers.py", line 88, in <genexpr>\n    total = sum(line.price for line in '
            "order.lines)\nAttributeError: 'NoneType' object has no attribute 'price'",
        },
    ),
)
