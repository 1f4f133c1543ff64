"""Server-sent events read line by line (the parts of the format the API uses)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from batchgate_client._types import Event


@dataclass
class EventParser:
    """Feed it lines; it returns an event at each blank line that ends one."""

    _fields: dict[str, str] = field(default_factory=dict)

    def feed(self, line: str) -> Event | None:
        line = line.rstrip("\r\n")
        if line.startswith(":"):
            return None  # a keep-alive comment
        if line:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            self._fields[name] = (
                self._fields[name] + "\n" + value if name == "data" and name in self._fields else value
            )
            return None
        fields, self._fields = self._fields, {}
        if "data" not in fields:
            return None
        return Event(
            id=int(fields.get("id") or 0),
            event=fields.get("event") or "message",
            data=json.loads(fields["data"]),
        )
