"""SQL lives in store modules only (docs/design.md §2): the half of the layer rule that
import-linter cannot see. ``pyproject.toml`` holds the import half (entrypoints reach
the store only through handlers).

A string constant that starts like a SQL statement in a service module other than
``store*.py`` fails this test, unless the module is listed below with what is left
to move. The list only shrinks: a new module with SQL is a failure.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VERBS = "SELECT|INSERT|UPDATE|DELETE|WITH|LOCK|TRUNCATE|MERGE|CREATE|ALTER|DROP"
SQL = re.compile(rf"^\s*({VERBS})\s", re.ASCII)

#: module → why it still holds SQL. Remove an entry once its SQL has moved to a store.
NOT_YET_MOVED = {
    # Readiness probes and start-up wiring, not use cases.
    "services/audit/src/clearway/audit/bootstrap.py": "readiness probe, partition config",
    "services/webhooks/src/clearway/webhooks/bootstrap.py": "readiness probe",
}


def _sql_strings(path: Path) -> list[int]:
    lines: set[int] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if SQL.match(node.value):
                lines.add(node.lineno)
        elif isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant) and SQL.match(str(first.value)):
                lines.add(node.lineno)
    return sorted(lines)


def _service_modules() -> list[Path]:
    return sorted(
        p
        for p in (ROOT / "services").glob("*/src/clearway/**/*.py")
        if not p.name.startswith("store")
    )


def test_no_sql_outside_store_modules() -> None:
    found = {}
    for path in _service_modules():
        rel = path.relative_to(ROOT).as_posix()
        lines = _sql_strings(path)
        if lines and rel not in NOT_YET_MOVED:
            found[rel] = lines
    assert not found, f"SQL outside store modules (move it into the service's store): {found}"


def test_the_detector_sees_plain_and_f_string_sql(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text(
        'A = "SELECT 1"\nB = f"UPDATE t SET x = {1}"\nC = "select is a word"\nD = "Selected"\n'
    )
    assert _sql_strings(sample) == [1, 2]
