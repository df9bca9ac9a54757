"""``clearway-schemas``: check the schema tree in CI, generate the JSON views.

    clearway-schemas check      compatibility, conventions, JSON views, changelogs
    clearway-schemas generate   (re)write every v<N>.json from its v<N>.avsc

Exit status: 0 when all is well, 1 when a problem was found, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from clearway.shared.schemas.compat import Problem, check_compatible, previous_revisions
from clearway.shared.schemas.registry import (
    SCHEMAS_DIR_ENV,
    EventSchema,
    SchemaLoadError,
    SchemaRegistry,
    default_schemas_dir,
    find_schemas_dir,
)

_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="clearway-schemas", description="Check and generate the Clearway event schemas."
    )
    parser.add_argument(
        "--root",
        type=Path,
        help=f"the schemas/ directory or the one holding it (default: ${SCHEMAS_DIR_ENV}, "
        "else the nearest schemas/ beside a pyproject.toml above the current directory)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="fail on any incompatible or inconsistent schema")
    commands.add_parser("generate", help="write the JSON Schema view of every schema")
    args = parser.parse_args(argv)
    try:
        registry = SchemaRegistry.load(args.root or _default_root())
    except SchemaLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.command == "generate":
        return _generate(registry)
    return _check(registry)


def check_tree(registry: SchemaRegistry) -> list[Problem]:
    """Every problem of every schema: conventions, JSON view, changelog, compatibility."""
    problems: list[Problem] = []
    for schema in registry.schemas():
        problems += check_conventions(schema)
        problems += check_json_view(schema)
        problems += check_changelog(schema, registry.changelog(schema.event_type))
        avsc = f"{schema.dataschema}.avsc"
        try:
            previous = previous_revisions(schema.path)
        except SchemaLoadError as exc:
            problems.append(Problem("", f"has an unreadable snapshot: {exc}", file=avsc))
            continue
        problems += [replace(p, file=avsc) for p in check_compatible(schema.avro, previous)]
    return problems


def check_conventions(schema: EventSchema) -> list[Problem]:
    """Naming rules: ``clearway.<domain>`` namespace, ``<EventType>V<N>`` name, a ``doc``."""
    file = f"{schema.dataschema}.avsc"
    problems: list[Problem] = []
    if not _EVENT_TYPE.match(schema.event_type) or not schema.event_type.startswith(
        f"{schema.domain}."
    ):
        problems.append(
            Problem(
                "", f"is for event type {schema.event_type!r}; expected '{schema.domain}.<name>'"
            )
        )
    name = str(schema.avro.get("name", ""))
    namespace, _, short = name.rpartition(".")
    namespace = namespace or str(schema.avro.get("namespace", ""))
    if namespace != f"clearway.{schema.domain}":
        problems.append(
            Problem("", f"has namespace {namespace!r}, expected 'clearway.{schema.domain}'")
        )
    expected = expected_record_name(schema.event_type, schema.major)
    if short != expected:
        problems.append(Problem("", f"has record name {short!r}, expected {expected!r}"))
    if not str(schema.avro.get("doc", "")).strip():
        problems.append(Problem("", "has no doc"))
    return [replace(p, file=file) for p in problems]


def expected_record_name(event_type: str, major: int) -> str:
    """``transfer.settled`` at v1 is ``TransferSettledV1``."""
    words = re.split(r"[._]", event_type)
    return "".join(w[:1].upper() + w[1:] for w in words) + f"V{major}"


def check_json_view(schema: EventSchema) -> list[Problem]:
    """The committed ``v<N>.json`` must equal the view generated from ``v<N>.avsc``."""
    view = schema.path.with_suffix(".json")
    file = f"{schema.dataschema}.json"
    if not view.is_file():
        return [Problem("", "is missing; run `clearway-schemas generate`", file=file)]
    try:
        current = json.loads(view.read_text(encoding="utf-8"))
    except ValueError:
        current = None
    if current != schema.json_schema():
        return [Problem("", "is out of date; run `clearway-schemas generate`", file=file)]
    return []


def check_changelog(schema: EventSchema, changelog: str) -> list[Problem]:
    """``CHANGELOG.md`` needs a ``## v<N>`` heading with at least one bullet line."""
    file = str(Path(schema.dataschema).parent / "CHANGELOG.md")
    heading = re.search(rf"^##\s+v{schema.major}\b.*$", changelog, flags=re.MULTILINE)
    if heading is None:
        return [Problem("", f"has no '## v{schema.major}' heading", file=file)]
    section = re.split(r"^#{1,2}\s", changelog[heading.end() :], maxsplit=1, flags=re.MULTILINE)[0]
    if not re.search(r"^\s*[-*]\s+\S", section, flags=re.MULTILINE):
        return [Problem("", f"'## v{schema.major}' has no bullet lines", file=file)]
    return []


def _check(registry: SchemaRegistry) -> int:
    problems = check_tree(registry)
    for problem in problems:
        print(problem, file=sys.stderr)
    count = len(registry.schemas())
    if problems:
        print(
            f"{len(problems)} problem(s) in {count} schema(s); a breaking change "
            "needs a new major version (v<N+1>.avsc)",
            file=sys.stderr,
        )
        return 1
    print(f"ok: {count} schema(s) under {registry.schemas_dir}")
    return 0


def _generate(registry: SchemaRegistry) -> int:
    for schema in registry.schemas():
        view = schema.path.with_suffix(".json")
        text = json.dumps(schema.json_schema(), indent=2, ensure_ascii=False) + "\n"
        if not view.is_file() or view.read_text(encoding="utf-8") != text:
            view.write_text(text, encoding="utf-8")
            print(f"wrote {schema.dataschema}.json")
    return 0


def _default_root() -> Path:
    if os.environ.get(SCHEMAS_DIR_ENV):
        return Path(os.environ[SCHEMAS_DIR_ENV])
    return find_schemas_dir(Path.cwd()) or default_schemas_dir()


if __name__ == "__main__":
    raise SystemExit(main())
