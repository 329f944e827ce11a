"""``rollback-lab bench``: its machinery at tiny sizes (never a timed assertion).

One real run (real services on a temp state dir, real ``aws``, bash, git and a kernel) checks
that every figure in the report is computed from the samples it reports, that every pipeline
is accounted for, and that nothing is left running; smaller tests pin the baseline script's
semantics, the statistics and the table.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from helpers import exercise
from helpers.bench import BenchOptions, render_table, run
from helpers.bench.lab import measure_lab
from helpers.bench.project import direct_script
from helpers.bench.stats import median, percentile, ratio
from helpers.circleci.watch import LOCAL_POLL, REMOTE_POLL, poll_intervals
from helpers.cli import main
from helpers.services import state as state_mod

REPORT_PARTS = {"services", "pipeline", "classroom", "events", "lab"}


def _notebook(path: Path, *sources: str) -> None:
    params = new_code_cell("WORKSPACE = None", metadata={"tags": ["parameters"]})
    notebook = new_notebook(cells=[params, *(new_code_cell(s) for s in sources)])
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(notebook, path)


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`rollback-lab bench --json` at tiny sizes, once for the module's tests."""
    notebooks = tmp_path_factory.mktemp("notebooks")
    # The lab part runs the kernels against the bench's own services instance.
    _notebook(
        notebooks / "01_services.ipynb",
        "from helpers.services import require_services\n"
        "endpoints = require_services()\n"
        "assert endpoints.state_dir.name == 'state', endpoints.state_dir\n"
        "print('services of', endpoints.state_dir)",
    )
    environ_before = dict(os.environ)
    capture = tmp_path_factory.mktemp("out") / "report.json"
    args = ["bench", "--json", "--runs", "1", "--pipelines", "2", "--events", "200"]
    args += ["--warmup", "0", "--notebooks", str(notebooks)]
    with pytest.MonkeyPatch.context() as mp:
        import sys

        with capture.open("w") as out:
            mp.setattr(sys, "stdout", out)
            code = main(args)
    report = json.loads(capture.read_text())
    report["_exit_code"] = code
    report["_environ_restored"] = dict(os.environ) == environ_before
    return report


def test_tiny_bench_reports_every_part_and_exits_0(tiny_bench: dict) -> None:
    assert tiny_bench["_exit_code"] == 0, json.dumps(tiny_bench["parts"], indent=2)
    assert tiny_bench["ok"] is True
    assert set(tiny_bench["parts"]) == REPORT_PARTS
    assert all(part["ok"] for part in tiny_bench["parts"].values())
    settings = tiny_bench["settings"]
    assert (settings["runs"], settings["pipelines"], settings["events"]) == (1, 2, 200)
    machine = tiny_bench["machine"]
    assert machine["cores"] >= 1 and machine["python"].count(".") == 2 and machine["date"]


def test_pipeline_ratio_is_the_ratio_of_the_reported_medians(tiny_bench: dict) -> None:
    part = tiny_bench["parts"]["pipeline"]
    assert part["runs"] == 1
    assert len(part["direct_s"]) == len(part["pipeline_s"]) == 1
    assert all(value > 0 for value in part["direct_s"] + part["pipeline_s"])
    assert part["direct_median_s"] == pytest.approx(statistics.median(part["direct_s"]))
    assert part["pipeline_median_s"] == pytest.approx(statistics.median(part["pipeline_s"]))
    expected = statistics.median(part["pipeline_s"]) / statistics.median(part["direct_s"])
    assert part["ratio"] == pytest.approx(expected, abs=2e-3)
    assert part["meets_target"] == (part["ratio"] <= part["target_ratio"])
    assert part["problems"] == []


def test_classroom_accounts_for_every_pipeline(tiny_bench: dict) -> None:
    part = tiny_bench["parts"]["classroom"]
    assert part["pipelines"] == part["triggered"] == part["listed"] == 2
    assert part["finished"] == part["as_expected"] == 2 and part["lost"] == 0
    assert part["timed_out"] is False
    latencies = part["latencies_s"]
    assert len(latencies) == 2 and all(0 < value <= part["wall_s"] + 0.5 for value in latencies)
    assert part["latency_s"]["max"] == max(latencies)
    assert part["latency_s"]["p50"] == min(latencies)  # nearest rank of two samples


def test_events_and_lab_parts(tiny_bench: dict) -> None:
    events = tiny_bench["parts"]["events"]
    assert events["events"] >= 200 and events["bars"] > 0 and events["png_bytes"] > 0
    parts_sum = events["frame_s"] + events["figure_s"] + events["render_s"]
    assert events["seconds"] == pytest.approx(parts_sum, abs=2e-3)
    lab = tiny_bench["parts"]["lab"]
    assert lab["count"] == 1 and lab["notebooks"][0]["name"] == "01_services.ipynb"
    assert lab["ok"] is True and lab["error"] is None


def test_the_bench_stops_what_it_started_and_restores_the_environment(tiny_bench: dict) -> None:
    assert tiny_bench["_environ_restored"]
    state_dir = tiny_bench["state_dir"]
    assert state_mod.read_state(Path(state_dir)) is None
    assert not Path(state_dir).exists()  # the temp dir is removed
    still_running = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if state_dir in cmdline:
            still_running.append(cmdline)
    assert still_running == []


def test_the_table_shows_the_measured_figures(tiny_bench: dict) -> None:
    table = render_table(tiny_bench)
    assert f"{tiny_bench['parts']['pipeline']['ratio']:.2f}" in table
    assert "2/2 as expected, 0 lost" in table
    assert "all parts worked" in table


def test_only_events_starts_no_services() -> None:
    report = run(BenchOptions(parts=("events",), events=50))
    assert set(report["parts"]) == {"events"} and report["ok"] is True


# --- the baseline script -------------------------------------------------------------------


def _config(smoke_command: str) -> dict:
    return {
        "version": 2.1,
        "commands": {
            "cleanup": {"steps": [{"run": {"command": "echo cleanup", "when": "on_fail"}}]}
        },
        "jobs": {
            "build": {"steps": ["checkout", {"run": "echo build"}]},
            "smoke": {
                "steps": [
                    {"run": {"name": "smoke", "command": smoke_command}},
                    {"run": "echo after-smoke"},
                    "cleanup",
                ]
            },
            "deploy": {"steps": [{"run": "echo deploy"}]},
        },
        "workflows": {
            "default": {
                "jobs": [
                    "build",
                    {"smoke": {"requires": ["build"]}},
                    {"deploy": {"requires": ["smoke"]}},
                ]
            }
        },
    }


def _run_script(tmp_path: Path, config: dict) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "direct.sh"
    script.write_text(direct_script(config, "default"))
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path)


def test_script_runs_on_fail_steps_only_after_a_failure_and_skips_dependants(tmp_path) -> None:
    failing = _run_script(tmp_path, _config("return 1"))
    assert failing.returncode == 1
    assert failing.stdout.split() == ["build", "cleanup"]

    passing = _run_script(tmp_path, _config("true"))
    assert passing.returncode == 0
    assert passing.stdout.split() == ["build", "after-smoke", "deploy"]


def test_script_runs_the_lab_configs_aws_commands_in_order() -> None:
    script = direct_script(exercise.lab_config())
    deploy = script.index("aws cloudformation deploy")
    smoke = script.index("return 1")
    delete = script.index("aws cloudformation delete-stack")
    assert deploy < smoke < delete
    assert script.count("--stack-name myStack-${CIRCLE_WORKFLOW_ID:0:7}") == 2


# --- statistics, the watch's poll waits, a failing lab ---------------------------------------


def test_statistics() -> None:
    samples = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert median(samples) == 3.0 and median([]) is None
    assert percentile(samples, 0.5) == 3.0 and percentile(samples, 0.9) == 5.0
    assert percentile(list(range(1, 21)), 0.9) == 18  # nearest rank: a measured sample
    assert ratio(3.0, 2.0) == 1.5 and ratio(None, 2.0) is None and ratio(1.0, 0.0) is None


def test_watch_polls_the_local_circleci_briefly_and_circleci_com_gently() -> None:
    assert poll_intervals("http://127.0.0.1:8123") == LOCAL_POLL
    assert poll_intervals("http://localhost:8123") == LOCAL_POLL
    assert poll_intervals("https://circleci.com") == REMOTE_POLL
    assert LOCAL_POLL[1] < 1.0 <= REMOTE_POLL[0]


def test_a_failing_notebook_fails_the_lab_part(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / "01_broken.ipynb", "raise RuntimeError('broken on purpose')")
    result = measure_lab(notebooks, tmp_path / "out", {"ROLLBACK_LAB_BENCH_TEST": "1"})
    assert not result.ok and "broken on purpose" in (result.error or "")
    assert result.to_json()["meets_target"] is False
    assert "ROLLBACK_LAB_BENCH_TEST" not in os.environ
