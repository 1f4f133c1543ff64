"""The wire format of a packed call: many items in one prompt, one JSON answer per item.

Gemini has no multi-prompt call, so several requests share one ``generateContent`` call
by listing them as JSON between ``<items>`` markers and asking for structured output
(``responseMimeType=application/json`` with ``ANSWER_SCHEMA``) keyed by item id.
"""

from __future__ import annotations

import json
from typing import Any

ITEMS_OPEN = "<items>"
ITEMS_CLOSE = "</items>"

INSTRUCTION = (
    "You will receive several independent requests as a JSON array between <items> and </items>. "
    "Answer each one on its own, as if it were the only request, using its own context if present. "
    "Never mix information between items. Return JSON of the form "
    '{"answers": [{"id": <the item id>, "answer": <your full answer as text>}]} '
    "with exactly one answer for every item id."
)

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "OBJECT",
    "properties": {
        "answers": {
            "type": "ARRAY",
            "items": {
                "type": "OBJECT",
                "properties": {
                    "id": {"type": "STRING"},
                    "answer": {"type": "STRING"},
                },
                "required": ["id", "answer"],
            },
        }
    },
    "required": ["answers"],
}


def render_items(items: list[dict[str, Any]]) -> str:
    """Render items (each with ``id``, ``prompt`` and optional ``context``) as the packed prompt."""
    body = json.dumps(items, ensure_ascii=False, separators=(",", ":"))
    return f"{INSTRUCTION}\n{ITEMS_OPEN}\n{body}\n{ITEMS_CLOSE}"


def parse_items(text: str) -> list[dict[str, Any]] | None:
    """Return the items of a packed prompt, or None when ``text`` is not one."""
    opening, closing = f"\n{ITEMS_OPEN}\n", f"\n{ITEMS_CLOSE}"
    start = text.find(opening)
    end = text.rfind(closing)
    if start < 0 or end < start:
        return None
    try:
        items = json.loads(text[start + len(opening) : end])
    except ValueError:
        return None
    if not isinstance(items, list) or not all(isinstance(i, dict) and "id" in i for i in items):
        return None
    return items


def parse_answers(text: str) -> dict[str, str]:
    """Map item id to answer text from a packed call's JSON output; bad entries are left out."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    answers = data.get("answers") if isinstance(data, dict) else None
    if not isinstance(answers, list):
        return {}
    found: dict[str, str] = {}
    for entry in answers:
        if not isinstance(entry, dict):
            continue
        item_id, answer = entry.get("id"), entry.get("answer")
        if isinstance(item_id, str) and isinstance(answer, str) and item_id not in found:
            found[item_id] = answer
    return found
