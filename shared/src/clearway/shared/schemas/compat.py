"""Compatibility of a schema with its earlier revisions inside one major version.

Inside a major version only additive, defaulted changes are allowed (docs/design.md §3).
The verdict comes from Apache Avro's ``ReaderWriterCompatibilityChecker``, run
in both directions against every earlier revision; the walk below only turns a
"no" into a message that names the field.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
    lookup_writer_field,
    schema_name_equals,
)
from avro.errors import AvroException

from clearway.shared.schemas.registry import SchemaLoadError

_CANNOT_READ_OLD = "events written with the previous schema cannot be read with this one"
_OLD_CANNOT_READ = "consumers on the previous schema cannot read events written with this one"


@dataclass(frozen=True)
class Revision:
    """An earlier revision of a schema file, labelled by where it came from."""

    label: str
    schema: Mapping[str, Any]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a schema file; ``field`` is a dotted path ("" for the file)."""

    field: str
    message: str
    against: tuple[str, ...] = ()
    file: str = ""

    def __str__(self) -> str:
        subject = f"field '{self.field}'" if self.field else ""
        if self.file:
            subject = f"{self.file}: {subject}" if subject else self.file
        versus = f" [against {', '.join(self.against)}]" if self.against else ""
        return f"{subject} {self.message}{versus}".lstrip()


def check_compatible(
    new_schema: Mapping[str, Any], previous_schemas: Iterable[Revision | Mapping[str, Any]]
) -> list[Problem]:
    """Problems that stop ``new_schema`` replacing every one of ``previous_schemas``.

    Full-transitive: topics keep old events and replays bring back any of them,
    while producers and consumers deploy independently. So the new schema must
    read data written with every earlier revision (consumers upgraded first),
    and every earlier revision must read data written with the new one
    (consumers not yet upgraded). Removing a field is refused even when it had
    a default: Avro readers would fill it in, but payloads travel as JSON and a
    partner's code would find the key gone.
    """
    try:
        new = _parse(new_schema)
    except ValueError as exc:
        return [Problem("", f"is not a valid Avro schema: {exc}")]
    found: dict[tuple[str, str], list[str]] = {}
    for number, previous in enumerate(previous_schemas, start=1):
        revision = previous if isinstance(previous, Revision) else Revision(f"#{number}", previous)
        try:
            old = _parse(revision.schema)
        except ValueError:
            # A revision that never parsed never validated an event: no data was written with it.
            continue
        for where, message in _problems(new, old):
            labels = found.setdefault((where, message), [])
            if revision.label not in labels:
                labels.append(revision.label)
    return [Problem(where, message, tuple(labels)) for (where, message), labels in found.items()]


def previous_revisions(avsc: Path) -> list[Revision]:
    """Earlier revisions of ``v<N>.avsc``: its git history and ``history/v<N>/*.avsc``.

    Nothing from git when the file is new, the directory is not a repository, or
    git is not installed.
    """
    revisions = [*_git_revisions(avsc), *_snapshot_revisions(avsc)]
    unique: dict[str, Revision] = {}
    for revision in revisions:
        unique.setdefault(json.dumps(revision.schema, sort_keys=True), revision)
    return list(unique.values())


def _parse(schema: Mapping[str, Any]) -> avro.schema.Schema:
    try:
        return avro.schema.parse(json.dumps(schema))
    except (AvroException, TypeError, KeyError, ValueError) as exc:
        raise ValueError(str(exc)) from None


def _verdict(reader: avro.schema.Schema, writer: avro.schema.Schema) -> SchemaCompatibilityResult:
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    return checker.get_compatibility(reader, writer)


def _incompatible(result: SchemaCompatibilityResult) -> bool:
    return result.compatibility is SchemaCompatibilityType.incompatible


def _problems(new: avro.schema.Schema, old: avro.schema.Schema) -> list[tuple[str, str]]:
    # Both directions: full, not just backward compatibility (see check_compatible).
    backward, forward = _verdict(new, old), _verdict(old, new)
    problems = _diff(new, old, "", set())
    if not problems and (_incompatible(backward) or _incompatible(forward)):
        # The walk found no culprit; still report the checker's own words.
        results = [r for r in (backward, forward) if _incompatible(r)]
        details = sorted(
            {f"{loc}: {m}" for r in results for loc in r.locations for m in r.messages}
        )
        problems = [("", f"is incompatible ({'; '.join(details)})")]
    return problems


def _diff(
    new: avro.schema.Schema, old: avro.schema.Schema, path: str, seen: set[tuple[int, int]]
) -> list[tuple[str, str]]:
    if isinstance(new, avro.schema.RecordSchema) and isinstance(old, avro.schema.RecordSchema):
        if (id(new), id(old)) in seen:
            return []
        seen.add((id(new), id(old)))
        return _diff_records(new, old, path, seen)
    if isinstance(new, avro.schema.ArraySchema) and isinstance(old, avro.schema.ArraySchema):
        return _diff(new.items, old.items, f"{path}[]", seen)
    if isinstance(new, avro.schema.MapSchema) and isinstance(old, avro.schema.MapSchema):
        return _diff(new.values, old.values, f"{path}{{}}", seen)
    if (
        isinstance(new, avro.schema.UnionSchema)
        and isinstance(old, avro.schema.UnionSchema)
        and [_label(s) for s in new.schemas] == [_label(s) for s in old.schemas]
    ):
        return [
            p
            for n, o in zip(new.schemas, old.schemas, strict=True)
            for p in _diff(n, o, path, seen)
        ]
    cannot_read_old = _incompatible(_verdict(new, old))
    old_cannot_read = _incompatible(_verdict(old, new))
    if not (cannot_read_old or old_cannot_read):
        return []
    reasons = [_CANNOT_READ_OLD] * cannot_read_old + [_OLD_CANNOT_READ] * old_cannot_read
    return [(path, f"{_change(new, old)}: {'; '.join(reasons)}")]


def _diff_records(
    new: avro.schema.RecordSchema,
    old: avro.schema.RecordSchema,
    path: str,
    seen: set[tuple[int, int]],
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if not schema_name_equals(new, old):
        problems.append((path, f"record renamed from {old.fullname} to {new.fullname}"))
    matched: set[int] = set()
    for field in new.fields:
        where = f"{path}.{field.name}" if path else field.name
        previous = lookup_writer_field(writer_schema=old, reader_field=field)
        if previous is not None:
            matched.add(id(previous))
            problems.extend(_diff(field.type, previous.type, where, seen))
        elif not field.has_default:
            problems.append(
                (where, f"was added without a default: {_CANNOT_READ_OLD}; give it a default")
            )
    for field in old.fields:
        if id(field) in matched:
            continue
        where = f"{path}.{field.name}" if path else field.name
        if field.has_default:
            reason = "JSON consumers would lose a field the contract promised"
        else:
            reason = _OLD_CANNOT_READ
        problems.append(
            (where, f"was removed or renamed: {reason}; that needs a new major version")
        )
    return problems


def _label(schema: avro.schema.Schema) -> str:
    if isinstance(schema, avro.schema.NamedSchema):
        return str(schema.fullname)
    if isinstance(schema, avro.schema.UnionSchema):
        return "[" + ", ".join(_label(s) for s in schema.schemas) + "]"
    if isinstance(schema, avro.schema.ArraySchema):
        return f"array<{_label(schema.items)}>"
    if isinstance(schema, avro.schema.MapSchema):
        return f"map<{_label(schema.values)}>"
    logical = schema.props.get("logicalType")
    return f"{schema.type} ({logical})" if logical else f"{schema.type}"


def _change(new: avro.schema.Schema, old: avro.schema.Schema) -> str:
    if isinstance(new, avro.schema.EnumSchema) and isinstance(old, avro.schema.EnumSchema):
        added = [s for s in new.symbols if s not in old.symbols]
        removed = [s for s in old.symbols if s not in new.symbols]
        changes = [f"added {', '.join(added)}"] * bool(added)
        changes += [f"removed {', '.join(removed)}"] * bool(removed)
        return f"enum {new.fullname} symbols changed ({'; '.join(changes)})"
    if isinstance(new, avro.schema.FixedSchema) and isinstance(old, avro.schema.FixedSchema):
        return f"fixed {new.fullname} size changed from {old.size} to {new.size}"
    before, after = _label(old), _label(new)
    if before == after:
        return f"type {after} changed incompatibly"
    return f"type changed from {before} to {after}"


def _git(cwd: Path, *args: str) -> str | None:
    git = shutil.which("git")
    if git is None or not cwd.is_dir():
        return None
    # Fixed argv, no shell; the only inputs are paths inside the repository.
    done = subprocess.run([git, "-C", str(cwd), *args], capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else None


def _git_revisions(avsc: Path) -> list[Revision]:
    top = _git(avsc.parent, "rev-parse", "--show-toplevel")
    if top is None:
        return []
    root = Path(top.strip())
    try:
        relative = avsc.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return []
    # No --follow: v2.avsc must not inherit the history of a v1.avsc it was copied from.
    shas = _git(root, "log", "--format=%H", "--", relative) or ""
    revisions: list[Revision] = []
    for sha in shas.split():
        text = _git(root, "show", f"{sha}:{relative}")
        if text is None:  # the commit that deleted the file
            continue
        try:
            schema = json.loads(text)
        except ValueError:
            continue  # never loadable, so never used to write an event
        if isinstance(schema, dict):
            revisions.append(Revision(f"commit {sha[:10]}", schema))
    return revisions


def _snapshot_revisions(avsc: Path) -> list[Revision]:
    revisions: list[Revision] = []
    for snapshot in sorted((avsc.parent / "history" / avsc.stem).glob("*.avsc")):
        try:
            schema = json.loads(snapshot.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SchemaLoadError(snapshot, f"not readable JSON: {exc}") from None
        revisions.append(Revision(f"history/{avsc.stem}/{snapshot.name}", schema))
    return revisions
