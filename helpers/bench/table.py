"""The bench's report as a table a person reads in a terminal (the JSON has every sample)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def render_table(report: Mapping[str, Any]) -> str:
    machine, settings, parts = report["machine"], report["settings"], report["parts"]
    rows: list[tuple[str, str, str]] = []
    if "services" in parts:
        rows += _services(parts["services"])
    for name, render in (
        ("pipeline", _pipeline),
        ("classroom", _classroom),
        ("events", _events),
        ("lab", _lab),
    ):
        if name in parts:
            part = parts[name]
            rows += _failed(name, part) if "error" in part and len(part) <= 2 else render(part)
    header = (
        f"rollback-lab bench: {machine['usable_cores'] or machine['cores']} cores, "
        f"Python {machine['python']}, {machine['date']}, "
        f"CloudFormation step {settings['cfn_step_seconds']:g} s"
    )
    width = [max(len(r[i]) for r in [("measure", "result", "target"), *rows]) for i in range(3)]
    lines = [header, ""]
    for row in [("measure", "result", "target"), *rows]:
        lines.append("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)).rstrip())
    problems = [p for part in parts.values() for p in part.get("problems", [])]
    problems += [f"{name}: {part['error']}" for name, part in parts.items() if part.get("error")]
    if problems:
        lines += ["", "problems:", *(f"  {p}" for p in problems)]
    lines += ["", "all parts worked" if report["ok"] else "SOME PARTS DID NOT WORK (see above)"]
    return "\n".join(lines)


def _verdict(part: Mapping[str, Any], target: str) -> str:
    return f"{target}  {'met' if part.get('meets_target') else 'MISSED'}"


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _failed(name: str, part: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    return [(name, "FAILED", "")]


def _services(part: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    if not part.get("ok"):
        return [("local services start", "FAILED", "")]
    return [("local services start", _s(part["start_s"]), "")]


def _pipeline(part: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    runs = part["runs"]
    ratio = part["ratio"]
    return [
        (f"pipeline: aws commands by bash (median of {runs})", _s(part["direct_median_s"]), ""),
        (f"pipeline: local CircleCI API (median of {runs})", _s(part["pipeline_median_s"]), ""),
        (
            "pipeline: ratio of medians",
            "n/a" if ratio is None else f"{ratio:.2f}",
            _verdict(part, f"<= {part['target_ratio']}"),
        ),
    ]


def _classroom(part: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    latency = part["latency_s"]
    return [
        (
            f"classroom: {part['pipelines']} pipelines at once",
            f"{part['as_expected']}/{part['pipelines']} as expected, {part['lost']} lost, "
            f"wall {_s(part['wall_s'])}",
            _verdict(part, "all finish"),
        ),
        (
            "classroom: latency p50 / p90 / max",
            f"{_s(latency['p50'])} / {_s(latency['p90'])} / {_s(latency['max'])}",
            "",
        ),
    ]


def _events(part: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (
            f"events -> chart ({part['events']:,} events)",
            f"{_s(part['seconds'])} (frame {part['frame_s']:.2f}, figure {part['figure_s']:.2f}, "
            f"png {part['render_s']:.2f})",
            _verdict(part, f"<= {part['target_s']:g} s"),
        )
    ]


def _lab(part: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    names = ", ".join(n["name"].split("_")[0] for n in part["notebooks"]) or "none"
    result = f"{_s(part['seconds'])} ({part['count']} notebooks: {names})"
    target = f"<= {part['target_s']:g} s"
    if not part["ok"]:
        return [("lab: notebooks after set-up", f"{result} FAILED", f"{target}  n/a")]
    return [("lab: notebooks after set-up", result, _verdict(part, target))]
