"""The event catalog, generated from ``schemas/`` through the kit's registry.

``GET /v1/event-types`` serves it; ``python -m clearway.webhooks.catalog docs/events.md``
writes the partner-readable page from the same source.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from clearway.shared.schemas import default_registry


def catalog() -> list[dict[str, Any]]:
    return [
        {
            "type": t.event_type,
            "domain": t.domain,
            "versions": list(t.versions),
            "description": t.doc,
            "schema": t.json_schema,
            "schemas": {f"v{v}": s for v, s in t.json_schemas.items()},
            "changelog": t.changelog,
        }
        for t in default_registry().event_types()
    ]


def markdown() -> str:
    lines = [
        "# Clearway event catalog",
        "",
        "Generated from `schemas/` by `python -m clearway.webhooks.catalog docs/events.md`;"
        " do not edit by hand. The same content is served at `GET /v1/event-types`.",
        "",
        "Every webhook delivery is a JSON object"
        ' `{"type", "timestamp", "event_id", "data"}` where `data` follows the schema below,'
        " signed per [Standard Webhooks](https://www.standardwebhooks.com/).",
        "",
        "The schemas are those of the events on Kafka, which is what an endpoint pinned to"
        " the first dated version (`2026-11-01`) receives; an endpoint pinned to a later"
        " version (`api_version`) gets `data` in that version's shapes, as its upgrade"
        " guide under [changes/](changes/) describes.",
        "",
    ]
    for t in catalog():
        lines += [f"## `{t['type']}`", "", t["description"], ""]
        props = t["schema"].get("properties", {})
        required = set(t["schema"].get("required", []))
        lines += ["| field | type | required | description |", "|---|---|---|---|"]
        for name, prop in props.items():
            kind = prop.get("type", "object")
            kind = " \\| ".join(kind) if isinstance(kind, list) else kind
            desc = str(prop.get("description", "")).replace("|", "\\|")
            lines.append(f"| `{name}` | {kind} | {'yes' if name in required else 'no'} | {desc} |")
        lines += ["", "<details><summary>JSON Schema</summary>", "", "```json"]
        lines += [json.dumps(t["schema"], indent=2), "```", "", "</details>", ""]
        changelog = t["changelog"].split("\n", 1)[-1].strip()
        lines += ["Changes:", "", changelog.replace("## ", "#### "), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = markdown()
    if args:
        Path(args[0]).write_text(text, encoding="utf-8")
        print(f"wrote {args[0]}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
