"""Fail on references to documents the repository does not contain.

The repository must stand alone: a comment or a page may cite the design only
as ``docs/design.md`` plus a section sign and number (or ``design.md`` from a page
under ``docs/``), and that section must exist as a numbered heading. Anything
pointing at notes kept outside the repository is refused.

    python deploy/ci/check_doc_refs.py [--root DIR]

Scans every file git knows (tracked, or new and not ignored) whose name ends
in a text suffix below; outside a git work tree it walks the directory. Prints
``file:line: reason`` per bad reference and exits 1 when there is any.
Standard library only, so CI can run it before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".py", ".md", ".sql", ".toml", ".yaml", ".yml", ".sh", ".html", ".txt", ".cfg")
NAMES = ("Makefile", "Dockerfile")
SKIP_DIRS = frozenset({".git", ".venv", ".local", "node_modules", "kafka-libs", "__pycache__"})

# Documents that were never part of the repository. The patterns are spelled so
# that this file does not match them itself.
_FOREIGN: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bDES[I]GN\b"), "cites a design document outside the repository"),
    (re.compile(r"\bSTYL[E]\.md\b"), "cites a style document outside the repository"),
    (re.compile(r"\bMISSIO[N]\.md\b"), "cites a mission document outside the repository"),
    (re.compile(r"\.\./shared/"), "points into a directory outside the repository"),
    (re.compile(r"\bsteering\s+notes?\b", re.IGNORECASE), "cites notes outside the repository"),
)
_SECTION = "\u00a7"
_NUMBER = r"\d+(?:\.\d+)*"
# A Markdown path, the section sign and a number, then optionally more numbers
# joined by "," "and" "/" "&" (each is checked).
_CITATION = re.compile(
    rf"(?P<path>(?:[\w.-]+/)*[\w.-]+\.md)\s*{_SECTION}\s*(?P<first>{_NUMBER})"
    rf"(?P<more>(?:\s*(?:,|and|/|&)\s*{_SECTION}\s*{_NUMBER})*)"
)
_MORE = re.compile(rf"{_SECTION}\s*({_NUMBER})")
# Numbered headings: "## 4. Title", "### 4.1 Title", or with a section sign.
_HEADING = re.compile(rf"^#{{1,6}}\s+{_SECTION}?\s*({_NUMBER})\.?(?:\s|$)")


@dataclass(frozen=True)
class BadReference:
    """One reference that points nowhere."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def is_text(name: str) -> bool:
    """Whether a file of this name is scanned."""
    base = os.path.basename(name)
    return base in NAMES or base.startswith("Dockerfile") or name.endswith(SUFFIXES)


def candidate_files(root: Path) -> list[str]:
    """Repository-relative paths to scan: git's view of the tree when there is one."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout.decode()
        names = [n for n in out.split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = list(_walk(root))
    return sorted({n for n in names if is_text(n) and (root / n).is_file()})


def _walk(root: Path) -> Iterator[str]:
    for here, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for f in files:
            yield os.path.relpath(os.path.join(here, f), root).replace(os.sep, "/")


def section_numbers(doc: Path) -> frozenset[str]:
    """The section numbers that have a heading in a Markdown file."""
    found: set[str] = set()
    fenced = False
    for line in doc.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = None if fenced else _HEADING.match(line)
        if m:
            found.add(m.group(1))
    return frozenset(found)


def _resolve(root: Path, citing: str, cited: str) -> Path | None:
    """The Markdown file a citation names: relative to the citing file, else under docs/."""
    for base in (root / os.path.dirname(citing), root, root / "docs"):
        p = (base / cited).resolve()
        if p.is_file() and p.is_relative_to(root.resolve()):
            return p
    return None


def check_file(root: Path, rel: str, sections: dict[Path, frozenset[str]]) -> list[BadReference]:
    """Every bad reference in one file."""
    try:
        text = (root / rel).read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []
    bad: list[BadReference] = []
    for no, line in enumerate(text.splitlines(), 1):
        for pattern, reason in _FOREIGN:
            m = pattern.search(line)
            if m:
                bad.append(BadReference(rel, no, f"{reason}: {m.group(0)!r}"))
        for m in _CITATION.finditer(line):
            cited = m.group("path")
            doc = _resolve(root, rel, cited)
            if doc is None:
                bad.append(BadReference(rel, no, f"cites {cited}, which the repository lacks"))
                continue
            if doc not in sections:
                sections[doc] = section_numbers(doc)
            numbers = [m.group("first"), *_MORE.findall(m.group("more"))]
            for n in numbers:
                if n not in sections[doc]:
                    bad.append(
                        BadReference(rel, no, f"cites {cited} {_SECTION}{n}: no such section")
                    )
    return bad


def check(root: Path, files: Iterable[str] | None = None) -> list[BadReference]:
    """Every bad reference under ``root`` (all candidate files unless ``files`` is given)."""
    sections: dict[Path, frozenset[str]] = {}
    bad: list[BadReference] = []
    for rel in candidate_files(root) if files is None else files:
        bad.extend(check_file(root, rel, sections))
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    args = ap.parse_args(argv)
    bad = check(args.root.resolve())
    for b in bad:
        print(b)
    if bad:
        print(f"{len(bad)} reference(s) to documents the repository does not contain")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
