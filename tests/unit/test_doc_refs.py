"""The repository stands alone: the reference check fails on citations of documents
it does not contain, and passes on the repository itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "deploy" / "ci" / "check_doc_refs.py"
# Spelled in pieces so that this file does not trip the check it tests.
SECTION = "\u00a7"
OUTSIDE_NOTES = "DES" + "IGN"


def run_checker(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECKER), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def plant(root: Path) -> None:
    (root / "docs").mkdir()
    (root / "docs" / "design.md").write_text(
        "# Design\n\n## 1. Services\n\n## 4. Exactly-once\n\n### 4.3 Inbox\n"
    )
    (root / "pkg").mkdir()
    (root / "pkg" / "ok.py").write_text(
        f'"""Inbox (docs/design.md {SECTION}4.3, {SECTION}1)."""\n'
        f"# RFC 9162 {SECTION}2.1.3.2 is not a design citation\n"
    )
    (root / "pkg" / "bad.py").write_text(
        "x = 1\n"
        f"# see {OUTSIDE_NOTES} {SECTION}3\n"
        f"# and docs/design.md {SECTION}99\n"
        f"# and docs/design.md {SECTION}4, {SECTION}7\n"
        f"# and docs/missing.md {SECTION}2\n"
    )
    (root / "Makefile").write_text("lint:\n\t# per the STYL" + "E.md rules\n")
    (root / "notes.md").write_text(
        "Background: ../shar" + "ed/notes.txt and the steer" + "ing notes.\n"
    )


def test_a_planted_bad_reference_fails_the_check_naming_file_and_line(tmp_path):
    plant(tmp_path)

    result = run_checker(tmp_path)

    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("pkg/bad.py:2:") and OUTSIDE_NOTES in line for line in lines)
    assert any(line.startswith("pkg/bad.py:3:") and f"{SECTION}99" in line for line in lines)
    assert any(line.startswith("pkg/bad.py:4:") and f"{SECTION}7" in line for line in lines)
    assert not any(line.startswith("pkg/bad.py:4:") and f"{SECTION}4:" in line for line in lines)
    assert any(line.startswith("pkg/bad.py:5:") and "missing.md" in line for line in lines)
    assert any(line.startswith("Makefile:2:") for line in lines)
    assert sum(line.startswith("notes.md:1:") for line in lines) == 2
    assert not any(line.startswith("pkg/ok.py") for line in lines)


def test_files_git_ignores_are_not_scanned_but_new_untracked_ones_are(tmp_path):
    plant(tmp_path)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".gitignore").write_text("pkg/bad.py\n")

    result = run_checker(tmp_path)

    assert "pkg/bad.py" not in result.stdout
    assert "Makefile:2:" in result.stdout and result.returncode == 1


def test_the_repository_cites_only_documents_it_contains():
    result = run_checker(ROOT)

    assert result.returncode == 0, result.stdout
