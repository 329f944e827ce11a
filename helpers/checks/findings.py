"""What a check found, in one shape for the terminal, JSON and a notebook.

Every rule — the lab's own, cfn-lint's, the CircleCI schema's — reports a :class:`Finding`, so
the CLI prints one table, exits 1 on any error, and a notebook shows one DataFrame.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER: dict[str, int] = {"error": 0, "warning": 1, "info": 2}
COLUMNS = ("rule", "severity", "file", "line", "message", "hint")


@dataclass(frozen=True)
class Finding:
    """One problem at one place: ``file:line``, what is wrong, and how to fix it."""

    rule: str
    severity: Severity
    file: str
    line: int | None
    message: str
    hint: str = ""

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Findings(list[Finding]):
    """A list of findings that knows how to show itself (table, JSON, DataFrame)."""

    def __init__(self, items: Iterable[Finding] = ()) -> None:
        super().__init__(items)

    @property
    def errors(self) -> Findings:
        return Findings(f for f in self if f.severity == "error")

    @property
    def warnings(self) -> Findings:
        return Findings(f for f in self if f.severity == "warning")

    def rules(self) -> set[str]:
        return {f.rule for f in self}

    def sorted(self) -> Findings:
        """Errors first, then by file and line, so the first row is the one to fix first."""
        return Findings(
            sorted(
                self,
                key=lambda f: (SEVERITY_ORDER[f.severity], f.file, f.line or 0, f.rule),
            )
        )

    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def to_json(self) -> str:
        return json.dumps([f.to_dict() for f in self], indent=2)

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([f.to_dict() for f in self], columns=list(COLUMNS))

    def to_table(self) -> str:
        return render_table(self)

    def _repr_html_(self) -> str:
        return self.to_frame()._repr_html_()


def render_table(findings: Iterable[Finding]) -> str:
    """A plain-text table a terminal shows without wrapping the short columns."""
    findings = list(findings)
    if not findings:
        return "No problems found."
    rows = [(f.severity, f.location, f.rule, f.message) for f in findings]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for f, row in zip(findings, rows, strict=True):
        head = "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True))
        lines.append(f"{head}  {row[3]}")
        if f.hint:
            lines.append(" " * (sum(widths) + 6) + f"hint: {f.hint}")
    counts = {s: sum(1 for f in findings if f.severity == s) for s in SEVERITY_ORDER}
    summary = ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items() if n)
    lines.append("")
    lines.append(summary)
    return "\n".join(lines)
