"""Reconciliation rules: the rail's settlement report against our settled transfers,
matched by reference (docs/design.md §5). Pure: no I/O here."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

MATCHED, MISSING, UNEXPECTED, MISMATCH = (
    "matched",
    "missing_at_rail",
    "unexpected_at_rail",
    "mismatch",
)


def new_run_id() -> str:
    """``rec_`` + 80 random bits."""
    return f"rec_{os.urandom(10).hex()}"


@dataclass
class Report:
    run_id: str
    matched: int = 0
    breaks: list[dict[str, Any]] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for b in self.breaks if b["kind"] == kind)

    def counts(self) -> dict[str, int]:
        """The run's totals, named as in ``transfer.reconciled``."""
        return {
            "matched": self.matched,
            "missing_at_rail": self.count(MISSING),
            "unexpected_at_rail": self.count(UNEXPECTED),
            "mismatched": self.count(MISMATCH),
        }

    def render(self) -> str:
        lines = [
            f"Reconciliation {self.run_id}",
            f"  matched             {self.matched}",
            f"  missing at rail     {self.count(MISSING)}",
            f"  unexpected at rail  {self.count(UNEXPECTED)}",
            f"  amount/currency     {self.count(MISMATCH)}",
        ]
        for b in self.breaks:
            lines.append(f"  ! {b['kind']:<19} {b['reference']}  {b['detail'] or ''}".rstrip())
        if not self.breaks:
            lines.append("  all clear")
        return "\n".join(lines)


def compare(
    transfers: dict[str, dict[str, Any]], charges: dict[str, dict[str, Any]], run_id: str
) -> Report:
    """Pure matching of settled transfers and settled rail charges by reference."""
    report = Report(run_id)
    for ref in sorted(set(transfers) | set(charges)):
        t, c = transfers.get(ref), charges.get(ref)
        if t is None:
            report.breaks.append(
                {
                    "reference": ref,
                    "kind": UNEXPECTED,
                    "detail": f"rail charge {c['charge_id']} has no transfer",
                }
            )
        elif c is None:
            report.breaks.append(
                {
                    "reference": ref,
                    "kind": MISSING,
                    "detail": f"transfer {t['id']} settled, no rail charge",
                }
            )
        elif (t["amount"], t["currency"]) != (c["amount"], c["currency"]):
            report.breaks.append(
                {
                    "reference": ref,
                    "kind": MISMATCH,
                    "detail": (
                        f"ours {t['amount']} {t['currency']}, rail {c['amount']} {c['currency']}"
                    ),
                }
            )
        else:
            report.matched += 1
    return report
