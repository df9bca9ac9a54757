"""Compatibility inside a major version: only additive, defaulted changes pass."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clearway.shared.schemas import Revision, check_compatible, previous_revisions
from clearway.shared.schemas.cli import main

V1: dict[str, Any] = {
    "type": "record",
    "name": "PlatformTestEventV1",
    "namespace": "clearway.platform",
    "doc": "A test event.",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "amount", "type": "long"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}


def changed(**fields: Any) -> dict[str, Any]:
    """V1 with fields replaced (a dict value), removed (None) or appended (new name)."""
    schema = copy.deepcopy(V1)
    by_name = {f["name"]: f for f in schema["fields"]}
    for name, definition in fields.items():
        if definition is None:
            schema["fields"].remove(by_name[name])
        elif name in by_name:
            by_name[name].update(definition)
        else:
            schema["fields"].append({"name": name, **definition})
    return schema


def fields_of(problems: list[Any]) -> list[str]:
    return [p.field for p in problems]


def test_an_unchanged_schema_is_compatible() -> None:
    assert check_compatible(V1, [V1]) == []


def test_a_new_optional_field_with_a_default_is_accepted() -> None:
    new = changed(channel={"type": ["null", "string"], "default": None})
    assert check_compatible(new, [V1]) == []


def test_a_new_field_without_a_default_is_rejected() -> None:
    problems = check_compatible(changed(channel={"type": "string"}), [V1])
    assert fields_of(problems) == ["channel"]
    assert "without a default" in problems[0].message


def test_a_removed_field_without_a_default_is_rejected() -> None:
    problems = check_compatible(changed(amount=None), [V1])
    assert fields_of(problems) == ["amount"]
    assert "consumers on the previous schema cannot read" in problems[0].message


def test_a_removed_field_that_had_a_default_is_rejected_because_json_readers_lose_it() -> None:
    # Avro alone would accept this; our payloads travel as JSON, so it is breaking.
    problems = check_compatible(changed(note=None), [V1])
    assert fields_of(problems) == ["note"]
    assert "new major version" in problems[0].message


def test_a_type_change_from_long_to_string_is_rejected_naming_the_field() -> None:
    problems = check_compatible(changed(amount={"type": "string"}), [V1])
    assert fields_of(problems) == ["amount"]
    assert "type changed from long to string" in problems[0].message
    assert str(problems[0]).startswith("field 'amount' ")


def test_widening_int_to_long_is_rejected_because_old_readers_cannot_read_it() -> None:
    old = changed(amount={"type": "int"})
    problems = check_compatible(changed(amount={"type": "long"}), [old])
    assert fields_of(problems) == ["amount"]
    assert "consumers on the previous schema cannot read" in problems[0].message
    assert "cannot be read with this one" not in problems[0].message


def test_a_nested_field_change_names_the_full_path() -> None:
    payer = {"type": "record", "name": "Payer", "fields": [{"name": "account", "type": "long"}]}
    old = changed(payer={"type": ["null", payer], "default": None})
    new_payer = {**payer, "fields": [{"name": "account", "type": "string"}]}
    new = changed(payer={"type": ["null", new_payer], "default": None})
    assert fields_of(check_compatible(new, [old])) == ["payer.account"]


def test_an_enum_symbol_added_without_an_enum_default_is_rejected() -> None:
    status = {"type": "enum", "name": "Status", "symbols": ["SETTLED", "FAILED"]}
    old = changed(status={"type": status})
    new = changed(status={"type": {**status, "symbols": ["SETTLED", "FAILED", "RETURNED"]}})
    problems = check_compatible(new, [old])
    assert fields_of(problems) == ["status"]
    assert "added RETURNED" in problems[0].message


def test_every_earlier_revision_is_checked_not_only_the_last() -> None:
    first = changed(channel={"type": "string", "default": ""})
    second = V1  # channel was dropped (history may hold such a mistake)
    new = changed(channel={"type": "long", "default": 0})
    assert check_compatible(new, [Revision("second", second)]) == []
    problems = check_compatible(new, [Revision("first", first), Revision("second", second)])
    assert fields_of(problems) == ["channel"]
    assert problems[0].against == ("first",)


def test_the_same_problem_against_several_revisions_is_reported_once() -> None:
    channel = {"type": ["null", "string"], "default": None}
    newer = changed(channel=channel)
    problems = check_compatible(changed(amount={"type": "string"}, channel=channel), [V1, newer])
    assert len(problems) == 1
    assert problems[0].against == ("#1", "#2")


def test_an_invalid_new_schema_is_a_problem_not_a_crash() -> None:
    problems = check_compatible({"type": "record", "name": "X", "fields": "nope"}, [V1])
    assert "not a valid Avro schema" in problems[0].message


# --- the command line over a real git repository ---------------------------------------

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

CHANGELOG = "# platform.test_event\n\n## v1\n\n- First version.\n"


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=Schema Test",
            "-c",
            "user.email=schemas@example.invalid",
            "-c",
            "commit.gpgsign=false",
            *args,
        ],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def write_schema(repo: Path, schema: dict[str, Any], major: int = 1) -> Path:
    directory = repo / "schemas" / "platform" / "platform.test_event"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "CHANGELOG.md").write_text(
        CHANGELOG + "".join(f"\n## v{n}\n\n- Next major.\n" for n in range(2, major + 1))
    )
    avsc = directory / f"v{major}.avsc"
    avsc.write_text(json.dumps(schema, indent=2))
    assert main(["--root", str(repo), "generate"]) == 0
    return avsc


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    write_schema(tmp_path, V1)
    commit(tmp_path, "v1")
    return tmp_path


@needs_git
def test_check_passes_on_a_freshly_committed_schema(repo: Path) -> None:
    assert main(["--root", str(repo), "check"]) == 0


@needs_git
def test_check_fails_on_an_incompatible_change_naming_file_and_field(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_schema(repo, changed(amount={"type": "string"}))
    assert main(["--root", str(repo), "check"]) == 1
    err = capsys.readouterr().err
    assert "schemas/platform/platform.test_event/v1.avsc: field 'amount'" in err
    assert "type changed from long to string" in err


@needs_git
def test_check_passes_on_a_compatible_change(repo: Path) -> None:
    write_schema(repo, changed(channel={"type": ["null", "string"], "default": None}))
    assert main(["--root", str(repo), "check"]) == 0


@needs_git
def test_check_still_fails_once_the_breaking_change_is_committed(repo: Path) -> None:
    write_schema(repo, changed(amount={"type": "string"}))
    commit(repo, "break amount")
    assert main(["--root", str(repo), "check"]) == 1


@needs_git
def test_a_new_major_version_owes_nothing_to_the_previous_one(repo: Path) -> None:
    v2 = {**changed(amount=None, id={"type": "long"}), "name": "PlatformTestEventV2"}
    write_schema(repo, v2, major=2)
    commit(repo, "v2")
    assert main(["--root", str(repo), "check"]) == 0


@needs_git
def test_git_history_yields_each_earlier_committed_revision(repo: Path) -> None:
    avsc = write_schema(repo, changed(channel={"type": ["null", "string"], "default": None}))
    commit(repo, "add channel")
    labels = [r.label for r in previous_revisions(avsc)]
    assert len(labels) == 2
    assert all(label.startswith("commit ") for label in labels)


def test_a_schema_outside_git_has_no_previous_revisions(tmp_path: Path) -> None:
    assert previous_revisions(write_schema(tmp_path, V1)) == []


def test_history_snapshots_are_checked_without_git(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    avsc = write_schema(tmp_path, changed(amount={"type": "string"}))
    snapshots = avsc.parent / "history" / "v1"
    snapshots.mkdir(parents=True)
    (snapshots / "2024-01-01.avsc").write_text(json.dumps(V1))
    assert main(["--root", str(tmp_path), "check"]) == 1
    assert "[against history/v1/2024-01-01.avsc]" in capsys.readouterr().err


def test_check_fails_when_the_json_view_is_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    avsc = write_schema(tmp_path, V1)
    avsc.write_text(json.dumps(changed(channel={"type": ["null", "string"], "default": None})))
    assert main(["--root", str(tmp_path), "check"]) == 1
    assert "v1.json is out of date" in capsys.readouterr().err


def test_check_fails_when_the_changelog_lacks_the_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    avsc = write_schema(tmp_path, V1)
    (avsc.parent / "CHANGELOG.md").write_text("# platform.test_event\n")
    assert main(["--root", str(tmp_path), "check"]) == 1
    assert "CHANGELOG.md has no '## v1' heading" in capsys.readouterr().err


def test_check_fails_on_a_record_name_that_breaks_the_convention(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_schema(tmp_path, {**V1, "name": "TestEvent"})
    assert main(["--root", str(tmp_path), "check"]) == 1
    err = capsys.readouterr().err
    assert "v1.avsc has record name 'TestEvent', expected 'PlatformTestEventV1'" in err


REPO = Path(__file__).resolve().parents[2]


def test_the_repository_schemas_pass_the_check() -> None:
    assert main(["--root", str(REPO), "check"]) == 0


def test_the_cli_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "clearway.shared.schemas.cli", "--root", str(REPO), "check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: ")
