"""Render the settings table of ``docs/settings.md`` from the settings classes themselves (``make docs``).

The ``#:`` comment above each field is its documentation; a test keeps the documented table
equal to this rendering, so no setting goes undocumented.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

from batchgate import settings_gemini, settings_sections
from batchgate.settings import SECTIONS, SimulatorSettings
from batching.simulator import settings as simulator_settings_module

BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"
_FIELD = re.compile(r"^\s+(\w+): [^=]+= ")


def _comments() -> dict[tuple[str, str], str]:
    """Map (class name, field name) to the ``#:`` comment lines above the field."""
    found: dict[tuple[str, str], str] = {}
    current_class = ""
    pending: list[str] = []
    sources = (settings_sections.__file__, settings_gemini.__file__, simulator_settings_module.__file__)
    lines = [line for source in sources for line in Path(str(source)).read_text().splitlines()]
    for line in lines:
        if line.startswith("class "):
            current_class, pending = line.split()[1].split("(")[0].rstrip(":"), []
        elif line.strip().startswith("#:"):
            pending.append(line.strip()[2:].strip())
        elif match := _FIELD.match(line):
            found[(current_class, match.group(1))] = " ".join(pending)
            pending = []
        elif not line.strip().startswith("#"):
            pending = []
    return found


def _default(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return f"`{value}`" if value != "" else "(empty)"


def markdown_table() -> str:
    """One table per settings section (the ``Settings`` attribute that holds it), then the simulator."""
    comments = _comments()
    parts: list[str] = []
    classes = [(name, cls, "BATCHGATE_") for name, cls in SECTIONS.items()]
    for name, cls, prefix in [*classes, ("simulator", SimulatorSettings, "BATCHGATE_SIM_")]:
        rows = [
            f"**`{name}`**: {_first_line(cls.__doc__)}",
            "",
            "| variable | default | meaning |",
            "|---|---|---|",
        ]
        defaults = cls()
        for field in dataclasses.fields(cls):
            if not field.metadata.get("env", True):
                continue
            value = getattr(defaults, field.name)
            default = _default(value).replace("|", "\\|")
            if isinstance(value, tuple):
                default = f"`{default}`"
            meaning = comments.get((cls.__name__, field.name), "")
            rows.append(f"| `{prefix}{field.name.upper()}` | {default} | {meaning} |")
        if name == "gemini":
            rows.append("| `GEMINI_API_KEY` | (empty) | Real Gemini key (no simulator URL: real Gemini). |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0]


def update_readme(path: Path) -> bool:
    """Rewrite the table between the markers; return True if the file changed."""
    text = path.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    new = text[:start] + "\n" + markdown_table() + "\n" + text[end:]
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    changed = update_readme(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/settings.md"))
    print("settings table updated" if changed else "settings table up to date")
