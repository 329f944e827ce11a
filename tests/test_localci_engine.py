"""The local engine's semantics with real bash, busybox, git and processes."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from support import SLUG, head, make_repo, pipeline_for, run_config

from helpers.localci.config import compile_config
from helpers.localci.observer import ProjectContext
from helpers.localci.recorder import RecordingObserver
from helpers.localci.runner import Engine

BASH = "docker: [{image: cimg/base:stable}]"


def test_when_matrix(tmp_path: Path) -> None:
    run = run_config(
        tmp_path,
        f"""
        version: 2.1
        jobs:
          ok:
            {BASH}
            steps:
              - run: {{name: first, command: "true"}}
              - run: {{name: ok-success, command: "true"}}
              - run: {{name: ok-fail, command: "true", when: on_fail}}
              - run: {{name: ok-always, command: "true", when: always}}
          bad:
            {BASH}
            steps:
              - run: {{name: boom, command: "exit 3"}}
              - run: {{name: bad-success, command: "true"}}
              - run: {{name: bad-fail, command: "exit 4", when: on_fail}}
              - run: {{name: bad-fail-2, command: "true", when: on_fail}}
              - run: {{name: bad-always, command: "true", when: always}}
        workflows:
          w:
            jobs: [ok, bad]
        """,
    )
    ok, bad = run.job("ok"), run.job("bad")
    config_steps = lambda job: job.step_names[2:]  # noqa: E731 - after the two preamble steps
    assert ok.step_names[:2] == ["Spin up environment", "Preparing environment variables"]
    assert config_steps(ok) == ["first", "ok-success", "ok-always"]
    assert config_steps(bad) == ["boom", "bad-fail", "bad-fail-2", "bad-always"]
    assert bad.step("boom").exit_code == 3
    assert bad.step("bad-fail").exit_code == 4
    assert bad.step("bad-fail-2").status == "success"
    assert (ok.status, bad.status) == ("success", "failed")
    assert run.result.workflow("w").status == "failed"


def test_shells_follow_the_image(tmp_path: Path) -> None:
    run = run_config(
        tmp_path,
        """
        version: 2.1
        jobs:
          bashy:
            docker: [{image: "python:3.12-slim"}]
            steps:
              - run: echo "shell=$BASH_VERSION"; false | true
          alpine:
            docker: [{image: "alpine:3.20"}]
            steps:
              - run: {name: no-bash, command: "bash -c true"}
          pipefail:
            docker: [{image: "alpine"}]
            steps:
              - run: {name: pipe, command: "false | true"}
        workflows:
          w: {jobs: [bashy, alpine, pipefail]}
        """,
    )
    bashy = run.job("bashy")
    assert bashy.status == "failed"  # -o pipefail: `false | true` fails
    assert "shell=5" in bashy.output
    assert "Default shell: /bin/bash -eo pipefail" in bashy.step("Spin up environment").text
    no_bash = run.job("alpine").step("no-bash")
    assert no_bash.exit_code == 127 and "bash: not found" in no_bash.text
    assert run.job("pipefail").step("pipe").status == "failed"


def test_requires_orders_jobs_and_independent_jobs_overlap(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    # Each of `left` and `right` waits until the other has started: only real overlap passes.
    meet = (
        'touch "$SHARED/$CIRCLE_JOB.started"; '
        "for i in $(seq 1 200); do "
        '[ -e "$SHARED/$OTHER.started" ] && exit 0; sleep 0.1; done; exit 1'
    )
    run = run_config(
        tmp_path,
        f"""
        version: 2.1
        jobs:
          left:
            {BASH}
            environment: {{OTHER: right}}
            steps: [{{run: {{name: meet, command: '{meet}'}}}}]
          right:
            {BASH}
            environment: {{OTHER: left}}
            steps: [{{run: {{name: meet, command: '{meet}'}}}}]
          after:
            {BASH}
            steps:
              - run: test -e "$SHARED/left.started" && test -e "$SHARED/right.started"
              - run: echo "wf=${{CIRCLE_WORKFLOW_ID:0:7}}" > "$SHARED/after.id"
        workflows:
          w:
            jobs:
              - left
              - right
              - after: {{requires: [left, right]}}
        """,
        extra_env={"SHARED": str(shared)},
    )
    assert run.result.workflow("w").status == "success", run.job("left").output
    left, after = run.job("left"), run.job("after")
    assert after.statuses[0][0] == "blocked"
    left_end = left.step("meet").finished_at
    assert after.step("Spin up environment").started_at >= left_end
    assert (shared / "after.id").read_text().strip() == f"wf={run.result.workflows[0].id[:7]}"


def test_workflow_id_is_shared_by_the_jobs_of_a_workflow(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    record = 'echo "myStack-${CIRCLE_WORKFLOW_ID:0:7}" > "$SHARED/$CIRCLE_JOB"'
    run = run_config(
        tmp_path,
        f"""
        version: 2.1
        jobs:
          a: {{docker: [{{image: amazon/aws-cli}}], steps: [{{run: '{record}'}}]}}
          b: {{docker: [{{image: cimg/python:3.12}}], steps: [{{run: '{record}'}}]}}
          c: {{docker: [{{image: cimg/base:current}}], steps: [{{run: '{record}'}}]}}
        workflows:
          one: {{jobs: [a, b]}}
          two: {{jobs: [c]}}
        """,
        extra_env={"SHARED": str(shared)},
    )
    ids = {w.name: w.id for w in run.result.workflows}
    a, b, c = ((shared / n).read_text().strip() for n in "abc")
    assert a == b == f"myStack-{ids['one'][:7]}"
    assert c == f"myStack-{ids['two'][:7]}" and c != a


def test_environment_precedence_bash_env_and_circle_variables(tmp_path: Path) -> None:
    run = run_config(
        tmp_path,
        f"""
        version: 2.1
        jobs:
          env:
            {BASH}
            environment: {{LEVEL: job, FROM_JOB: yes-job}}
            steps:
              - checkout
              - run: echo 'export EXPORTED=from-bash-env' >> "$BASH_ENV"
              - run:
                  name: show
                  environment: {{LEVEL: step}}
                  command: |
                    echo "level=$LEVEL project=$PROJECT_VAR job=$FROM_JOB exported=$EXPORTED"
                    echo "ci=$CI circleci=$CIRCLECI job=$CIRCLE_JOB num=$CIRCLE_BUILD_NUM"
                    echo "user=$CIRCLE_PROJECT_USERNAME repo=$CIRCLE_PROJECT_REPONAME"
                    echo "branch=$CIRCLE_BRANCH sha=$CIRCLE_SHA1 wd=$CIRCLE_WORKING_DIRECTORY"
                    echo "pwd=$PWD home=$HOME"
                    test -f README.md
        workflows:
          w: {{jobs: [env]}}
        """,
        project_env={"PROJECT_VAR": "p", "LEVEL": "from-project-settings"},
        files={"README.md": "hello"},
    )
    job = run.job("env")
    out = job.step("show").text
    assert job.status == "success", job.output
    assert "level=step project=p job=yes-job exported=from-bash-env" in out
    assert f"ci=true circleci=true job=env num={job.number}" in out
    assert "user=udacity repo=rollback-lab" in out
    assert f"branch=main sha={head(tmp_path / 'repo')}" in out
    assert "wd=~/project" in out
    home = out.rsplit("home=", 1)[1].split()[0]
    assert f"pwd={home}/project" in out


def test_secrets_are_masked(tmp_path: Path) -> None:
    run = run_config(
        tmp_path,
        f"""
        version: 2.1
        jobs:
          leak:
            {BASH}
            steps:
              - run:
                  name: "leak $SECRET"
                  command: 'echo "s=$SECRET t=$SHORT"; echo "$SECRET" >&2'
        workflows:
          w: {{jobs: [leak]}}
        """,
        project_env={"SECRET": "hunter22-very-secret", "SHORT": "abc"},
    )
    job = run.job("leak")
    everything = "".join(s.text + s.name for s in job.steps.values())
    assert "hunter22" not in everything
    assert "s=******** t=abc" in job.output
    assert "SECRET=**REDACTED**" in job.step("Preparing environment variables").text


def test_dependants_of_a_failed_job_and_requires_with_statuses(tmp_path: Path) -> None:
    run = run_config(
        tmp_path,
        f"""
        version: 2.1
        jobs:
          build: {{{BASH}, steps: [{{run: exit 1}}]}}
          deploy: {{docker: [{{image: cimg/base:2024.01}}], steps: [{{run: "true"}}]}}
          after_deploy: {{docker: [{{image: cimg/base:2024.01}}], steps: [{{run: "true"}}]}}
          rollback: {{docker: [{{image: cimg/base:2024.01}}], steps: [{{run: "true"}}]}}
          notify: {{docker: [{{image: cimg/base:2024.01}}], steps: [{{run: "true"}}]}}
        workflows:
          w:
            jobs:
              - build
              - deploy: {{requires: [build]}}
              - after_deploy: {{requires: [deploy]}}
              - rollback: {{requires: [{{build: failed}}]}}
              - notify: {{requires: [{{build: [success, failed]}}]}}
        """,
    )
    jobs = run.result.workflow("w").jobs
    statuses = {name: j.status for name, j in jobs.items()}
    assert statuses == {
        "build": "failed",
        "deploy": "not_run",
        "after_deploy": "not_run",
        "rollback": "success",
        "notify": "success",
    }
    assert run.result.workflow("w").status == "failed"
    assert run.job("deploy").steps == {}


def test_branch_filters(tmp_path: Path) -> None:
    config = """
        version: 2.1
        jobs:
          any: {docker: [{image: alpine}], steps: [{run: "true"}]}
          main_only: {docker: [{image: alpine}], steps: [{run: "true"}]}
          not_main: {docker: [{image: alpine}], steps: [{run: "true"}]}
          needs_main: {docker: [{image: alpine}], steps: [{run: "true"}]}
        workflows:
          w:
            jobs:
              - any
              - main_only: {filters: {branches: {only: main}}}
              - not_main: {filters: {branches: {ignore: [main, /release-.*/]}}}
              - needs_main: {requires: [main_only]}
        """
    run = run_config(tmp_path / "a", config, branch="feature-x")
    assert set(run.result.workflow("w").jobs) == {"any", "not_main"}
    run = run_config(tmp_path / "b", config, branch="main")
    assert set(run.result.workflow("w").jobs) == {"any", "main_only", "needs_main"}


def test_queued_when_the_concurrency_bound_is_reached(tmp_path: Path) -> None:
    run = run_config(
        tmp_path,
        """
        version: 2.1
        jobs:
          one: {docker: [{image: alpine}], steps: [{run: "true"}]}
          two: {docker: [{image: alpine}], steps: [{run: "true"}]}
        workflows:
          w: {jobs: [one, two]}
        """,
        max_concurrent_jobs=1,
    )
    one, two = run.job("one"), run.job("two")
    assert [s for s, _ in one.statuses][0] == "queued"
    first, second = sorted([one, two], key=lambda j: j.statuses[1][1])
    assert [s for s, _ in second.statuses] == ["queued", "running", "success"]
    assert second.statuses[1][1] >= first.statuses[-1][1]  # ran only after the first ended


def test_no_output_timeout_message(tmp_path: Path) -> None:
    run = run_config(
        tmp_path,
        """
        version: 2.1
        jobs:
          quiet:
            docker: [{image: cimg/base:stable}]
            steps:
              - run: {name: silent, command: "echo start; sleep 30", no_output_timeout: 1s}
              - run: {name: cleanup, command: "echo cleaning", when: on_fail}
        workflows:
          w: {jobs: [quiet]}
        """,
    )
    job = run.job("quiet")
    silent = job.step("silent")
    assert silent.status == "timedout"
    assert "Too long with no output (exceeded 1s): context deadline exceeded" in silent.text
    assert job.status == "failed"
    assert "cleaning" in job.step("cleanup").text


def test_cancel_job_kills_the_process_group_and_skips_on_fail(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        """
        version: 2.1
        jobs:
          long:
            docker: [{image: cimg/base:stable}]
            steps:
              - run: {name: wait, command: "sleep 300 & echo \\"pid=$!\\"; wait"}
              - run: {name: rollback, command: "echo rolled", when: on_fail}
              - run: {name: finally, command: "echo always", when: always}
        workflows:
          w: {jobs: [long]}
        """,
    )
    pipeline = pipeline_for(repo)
    compiled = compile_config((repo / ".circleci/config.yml").read_text(), pipeline=pipeline)
    engine = Engine(tmp_path / "work")
    started = threading.Event()
    pids: list[int] = []

    def on_event(kind: str, data: dict) -> None:
        match = re.search(r"^pid=(\d+)", data.get("message", ""), re.M)
        if kind == "step_output" and match:
            pids.append(int(match.group(1)))
            started.set()

    observer = RecordingObserver(on_event=on_event)
    box: dict = {}
    t = threading.Thread(
        target=lambda: box.update(
            result=engine.run_pipeline(
                compiled,
                project=ProjectContext(SLUG, repo),
                pipeline=pipeline,
                observer=observer,
            )
        )
    )
    t.start()
    assert started.wait(60)
    job_id = observer.job("long").id
    assert engine.cancel_job(job_id)
    t.join(60)
    assert not t.is_alive()
    job = observer.job("long")
    assert job.status == "canceled"
    assert job.step("wait").status == "canceled"
    assert "rollback" not in job.step_names and "finally" not in job.step_names
    assert box["result"].workflow("w").status == "canceled"
    assert not _alive(pids[0])  # the step's `sleep 300` went with its process group


def _alive(pid: int) -> bool:
    """Running (a killed orphan may stay a zombie until init reaps it: that is not alive)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_workspace_artifacts_and_cache(tmp_path: Path) -> None:
    run = run_config(
        tmp_path,
        """
        version: 2.1
        jobs:
          make:
            docker: [{image: cimg/base:stable}]
            steps:
              - run: mkdir -p out && echo built > out/app.txt && echo dep > dep.txt
              - persist_to_workspace: {root: ., paths: [out]}
              - store_artifacts: {path: out/app.txt, destination: app.txt}
              - save_cache: {key: 'deps-{{ .Branch }}-{{ checksum "dep.txt" }}', paths: [dep.txt]}
          use:
            docker: [{image: cimg/base:stable}]
            steps:
              - attach_workspace: {at: ws}
              - restore_cache: {keys: [deps-main-]}
              - run: test "$(cat ws/out/app.txt)" = built && test "$(cat dep.txt)" = dep
        workflows:
          w:
            jobs: [make, {use: {requires: [make]}}]
        """,
    )
    assert run.result.workflow("w").status == "success", run.job("use").output
    make_id = run.job("make").id
    assert (run.engine.artifacts_dir(make_id) / "app.txt").read_text() == "built\n"


def test_unknown_image_warns_and_unsupported_steps_say_so(tmp_path: Path) -> None:
    run = run_config(
        tmp_path,
        """
        version: 2.1
        jobs:
          odd:
            docker: [{image: "example.org/team/custom:1"}]
            steps:
              - setup_remote_docker
        workflows:
          w: {jobs: [odd]}
        """,
    )
    job = run.job("odd")
    assert "steps run with the host's tools" in job.step("Spin up environment").text
    remote = job.step("Setup a remote Docker engine")
    assert remote.status == "failed" and "not supported locally" in remote.text


def test_background_step_runs_alongside(tmp_path: Path) -> None:
    run = run_config(
        tmp_path,
        """
        version: 2.1
        jobs:
          bg:
            docker: [{image: cimg/base:stable}]
            steps:
              - run: {name: server, background: true, command: "touch server.up; sleep 300"}
              - run: for i in $(seq 1 100); do [ -e server.up ] && exit 0; sleep 0.1; done; exit 1
        workflows:
          w: {jobs: [bg]}
        """,
    )
    job = run.job("bg")
    assert job.status == "success", job.output
    assert job.step("server").finished_at is not None


def test_rerun_from_failed_carries_successes(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    config = """
        version: 2.1
        jobs:
          good: {docker: [{image: alpine}], steps: [{run: 'echo x >> "$SHARED/good"'}]}
          flaky:
            docker: [{image: alpine}]
            steps: [{run: 'echo x >> "$SHARED/flaky"; [ "$(wc -l < "$SHARED/flaky")" -ge 2 ]'}]
          last: {docker: [{image: alpine}], steps: [{run: "true"}]}
        workflows:
          w: {jobs: [good, flaky, {last: {requires: [good, flaky]}}]}
        """
    run = run_config(tmp_path, config, extra_env={"SHARED": str(shared)})
    first = run.result.workflow("w")
    assert {n: j.status for n, j in first.jobs.items()} == {
        "good": "success",
        "flaky": "failed",
        "last": "not_run",
    }
    repo = tmp_path / "repo"
    observer = RecordingObserver()
    again = run.engine.rerun_workflow(
        run.compiled,
        workflow_name="w",
        previous_jobs={n: j.status for n, j in first.jobs.items()},
        jobs=None,
        project=ProjectContext(SLUG, repo),
        pipeline=pipeline_for(repo),
        observer=observer,
        extra_env={"SHARED": str(shared)},
    ).workflow("w")
    assert again.id != first.id
    assert {n: j.status for n, j in again.jobs.items()} == {
        "good": "success",
        "flaky": "success",
        "last": "success",
    }
    assert again.jobs["good"].carried_over and observer.job("good").steps == {}
    assert (shared / "good").read_text() == "x\n"  # not run again
