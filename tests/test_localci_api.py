"""The local CircleCI's HTTP API: auth, errors, projects, env vars, pipelines, logs, restarts.

A real server on loopback, the real engine running real bash on real git repositories; each
test has its own state dir and stops everything it started.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest
from support import (
    SLUG,
    TRIVIAL_CONFIG,
    client,
    commit_files,
    git,
    linked,
    local_circleci,
    make_repo,
    wait_for,
    wait_pipeline,
)

from helpers.cli import main as cli_main
from helpers.errors import InputError
from helpers.localci.projects import link_project, normalize_slug

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", TRIVIAL_CONFIG)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def served(state_dir: Path, repo: Path):
    linked(state_dir, repo)
    with local_circleci(state_dir) as served:
        yield served


@pytest.fixture
def api(served):
    with client(served) as api:
        yield api


def trigger(api: httpx.Client, body: dict | None = None, slug: str = SLUG) -> dict:
    response = api.post(f"/project/{slug}/pipeline", json=body or {})
    assert response.status_code == 201, response.text
    return response.json()


# --- auth -------------------------------------------------------------------------------------


def test_auth_accepts_circle_token_basic_and_bearer(served) -> None:
    me = f"{served.url}/api/v2/me"
    for kwargs in (
        {"headers": {"Circle-Token": served.token}},
        {"auth": (served.token, "")},
        {"headers": {"Authorization": f"Bearer {served.token}"}},
    ):
        response = httpx.get(me, **kwargs)
        assert response.status_code == 200, kwargs
        assert set(response.json()) >= {"id", "login", "name"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "You must log in first."),
        ({"headers": {"Circle-Token": "not-the-token"}}, "Invalid token provided."),
        ({"auth": ("wrong", "")}, "Invalid token provided."),
        ({"headers": {"Authorization": "Bearer wrong"}}, "Invalid token provided."),
    ],
)
def test_auth_refuses_missing_or_wrong_token(served, kwargs, message) -> None:
    for path in ("/api/v2/me", f"/api/v2/project/{SLUG}/pipeline", "/api/v2/no/such/route"):
        response = httpx.get(served.url + path, **kwargs)
        assert response.status_code == 401
        assert response.json() == {"message": message}


def test_query_parameter_token_is_refused_as_circleci_does(served) -> None:
    response = httpx.get(f"{served.url}/api/v2/me", params={"circle-token": served.token})
    assert response.status_code == 401
    assert "deprecated" in response.json()["message"]


def test_token_is_private_and_survives_a_restart(state_dir: Path, repo: Path) -> None:
    with local_circleci(state_dir) as first:
        token = first.token
        assert token not in repr(first)
    mode = stat.S_IMODE(os.stat(state_dir / "circleci-token").st_mode)
    assert mode == 0o600
    with local_circleci(state_dir) as second:
        assert second.token == token
        assert second.url.startswith("http://127.0.0.1:")


# --- projects and slugs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        "gh/udacity/rollback-lab",
        "github/udacity/rollback-lab",
        "gh%2Fudacity%2Frollback-lab",
        "github%2Fudacity%2Frollback-lab",
    ],
)
def test_slug_spellings_reach_one_project(api, spelling) -> None:
    response = api.get(f"/project/{spelling}/pipeline")
    assert response.status_code == 200, response.text
    project = api.get(f"/project/{spelling}").json()
    assert project["slug"] == "gh/udacity/rollback-lab"


def test_bitbucket_and_circleci_slugs(state_dir: Path, repo: Path) -> None:
    linked(state_dir, repo, "bitbucket/team/app")
    linked(state_dir, repo, "circleci/0a1b2c/3d4e5f")
    with local_circleci(state_dir) as served, client(served) as api:
        assert api.get("/project/bb/team/app/pipeline").status_code == 200
        assert api.get("/project/bitbucket%2Fteam%2Fapp").json()["slug"] == "bb/team/app"
        assert api.get("/project/circleci/0a1b2c/3d4e5f").json()["vcs_info"]["provider"] == (
            "CircleCI"
        )


def test_link_validates_slug_and_repository(tmp_path: Path, repo: Path) -> None:
    assert normalize_slug("GitHub/Org/Repo") == "gh/Org/Repo"
    with pytest.raises(InputError, match="vcs/org/repo"):
        link_project("udacity/rollback-lab", repo, state_dir=tmp_path / "s")
    with pytest.raises(InputError, match="unknown vcs"):
        link_project("gitlab/a/b", repo, state_dir=tmp_path / "s")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(InputError, match="not a git repository") as excinfo:
        link_project(SLUG, plain, state_dir=tmp_path / "s")
    assert str(plain) in str(excinfo.value)


def test_link_command_while_the_server_runs(state_dir: Path, repo: Path, capsys) -> None:
    with local_circleci(state_dir) as served, client(served) as api:
        assert api.get("/project/gh/class/student-1/pipeline").status_code == 404
        code = cli_main(["link", "gh/class/student-1", str(repo), "--state-dir", str(state_dir)])
        assert code == 0
        assert "gh/class/student-1" in capsys.readouterr().out
        assert api.get("/project/gh/class/student-1/pipeline").status_code == 200
    assert cli_main(["link", "nonsense", str(repo), "--state-dir", str(state_dir)]) == 2
    assert "vcs/org/repo" in capsys.readouterr().err


# --- 404 and 400 ------------------------------------------------------------------------------


def test_unknown_things_are_404_with_circleci_messages(api) -> None:
    cases = {
        "/project/gh/udacity/unknown/pipeline": "Project not found",
        "/project/gh/udacity/unknown/envvar": "Project not found",
        "/pipeline/5034460f-c7c4-4c43-9457-de07e2029e7b": "Pipeline not found",
        "/pipeline/5034460f-c7c4-4c43-9457-de07e2029e7b/workflow": "Pipeline not found",
        "/pipeline/5034460f-c7c4-4c43-9457-de07e2029e7b/config": "Pipeline not found",
        f"/project/{SLUG}/pipeline/99": "Pipeline not found",
        "/workflow/5034460f-c7c4-4c43-9457-de07e2029e7b": "Workflow not found",
        "/workflow/5034460f-c7c4-4c43-9457-de07e2029e7b/job": "Workflow not found",
        f"/project/{SLUG}/job/12345": "Job not found",
        f"/project/{SLUG}/envvar/NOPE": "Environment variable not found",
    }
    for path, message in cases.items():
        response = api.get(path)
        assert (response.status_code, response.json()) == (404, {"message": message}), path
    for path in (
        "/project/gh/udacity/unknown/pipeline",
        "/workflow/5034460f-c7c4-4c43-9457-de07e2029e7b/cancel",
        "/workflow/5034460f-c7c4-4c43-9457-de07e2029e7b/rerun",
        "/jobs/5034460f-c7c4-4c43-9457-de07e2029e7b/cancel",
        f"/project/{SLUG}/job/77/cancel",
    ):
        assert api.post(path, json={}).status_code == 404, path


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"branch": 7}', "'branch' must be a string"),
        (b'{"branch": "main", "tag": "v1"}', "Only one of branch or tag"),
        (b'{"parameters": ["a"]}', "'parameters' must be an object"),
        (b'{"parameters": {"x": 1.5}}', "must be a string, integer or boolean"),
        (b'{"brnach": "main"}', "Unexpected field 'brnach'"),
    ],
)
def test_bad_trigger_bodies_are_400(api, body, fragment) -> None:
    response = api.post(
        f"/project/{SLUG}/pipeline", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert fragment in response.json()["message"]
    assert api.get(f"/project/{SLUG}/pipeline").json()["items"] == []  # nothing was created


def test_bad_env_var_and_page_token_are_400(api) -> None:
    response = api.post(f"/project/{SLUG}/envvar", json={"name": "1BAD", "value": "x"})
    assert response.status_code == 400 and "1BAD" in response.json()["message"]
    response = api.post(f"/project/{SLUG}/envvar", json={"name": "ONLY_NAME"})
    assert response.status_code == 400
    response = api.get(f"/project/{SLUG}/pipeline", params={"page-token": "garbage!"})
    assert response.status_code == 400 and "page-token" in response.json()["message"]


# --- env vars ---------------------------------------------------------------------------------


def test_env_vars_are_masked_on_every_read(api) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    created = api.post(f"/project/{SLUG}/envvar", json={"name": "AWS_SECRET", "value": secret})
    assert created.status_code == 201
    assert created.json()["value"] == "xxxxEKEY"
    api.post(f"/project/{SLUG}/envvar", json={"name": "PIN", "value": "123"})
    listed = api.get(f"/project/{SLUG}/envvar").json()
    assert [(v["name"], v["value"]) for v in listed["items"]] == [
        ("AWS_SECRET", "xxxxEKEY"),
        ("PIN", "xxxx"),
    ]
    assert api.get(f"/project/{SLUG}/envvar/AWS_SECRET").json()["value"] == "xxxxEKEY"
    assert secret not in api.get(f"/project/{SLUG}/envvar").text
    deleted = api.delete(f"/project/{SLUG}/envvar/AWS_SECRET")
    assert deleted.status_code == 200 and "message" in deleted.json()
    assert api.get(f"/project/{SLUG}/envvar/AWS_SECRET").status_code == 404
    assert api.delete(f"/project/{SLUG}/envvar/AWS_SECRET").status_code == 404


# --- pipelines --------------------------------------------------------------------------------


def test_trigger_runs_the_config_and_serves_step_logs(api, served, repo: Path) -> None:
    api.post(f"/project/{SLUG}/envvar", json={"name": "DEPLOY_KEY", "value": "s3cr3t-value"})
    revision = commit_files(
        repo,
        {
            ".circleci/config.yml": TRIVIAL_CONFIG.replace(
                'echo "hello from $CIRCLE_JOB"',
                'echo "hello from $CIRCLE_JOB, << pipeline.parameters.note >>"; '
                'echo "key=$DEPLOY_KEY"',
            ).replace("jobs:\n", "parameters:\n  note: {type: string, default: x}\njobs:\n", 1)
        },
        "Print the key",
    )
    created = trigger(api, {"branch": "main", "parameters": {"note": "hi"}})
    assert created["state"] == "pending" and created["number"] == 1
    done = wait_pipeline(api, created["id"])
    pipeline = done["pipeline"]
    assert pipeline["vcs"]["revision"] == revision
    assert pipeline["vcs"]["branch"] == "main"
    assert pipeline["vcs"]["commit"]["subject"] == "Print the key"
    assert pipeline["trigger_parameters"]["note"] == "hi"
    [workflow] = done["workflows"]
    assert (workflow["name"], workflow["status"]) == ("main", "success")
    [job] = done["jobs"][workflow["id"]]
    assert (job["name"], job["status"], job["type"]) == ("hello", "success", "build")

    details = api.get(f"/project/{SLUG}/job/{job['job_number']}").json()
    assert details["status"] == "success" and details["duration"] >= 0
    assert details["latest_workflow"] == {"id": workflow["id"], "name": "main"}
    assert details["pipeline"] == {"id": created["id"]}

    config = api.get(f"/pipeline/{created['id']}/config").json()
    assert "DEPLOY_KEY" in config["source"] and "version: 2" in config["compiled"]

    with client(served, version="v1.1") as v1:
        build = v1.get(f"/project/github/udacity/rollback-lab/{job['job_number']}").json()
    assert build["status"] == "success" and build["build_num"] == job["job_number"]
    step = next(s for s in build["steps"] if s["name"] == "Say hello")
    [action] = step["actions"]
    assert action["status"] == "success" and action["exit_code"] == 0
    lines = httpx.get(action["output_url"]).json()  # no token needed, as CircleCI's S3 URLs
    text = "".join(line["message"] for line in lines)
    assert "hello from hello, hi" in text
    assert "s3cr3t-value" not in text and "key=********" in text
    assert {line["type"] for line in lines} <= {"out", "err"}
    assert all(line["time"].endswith("Z") for line in lines)
    tampered = httpx.get(action["output_url"].replace("sig=", "sig=0"))
    assert tampered.status_code == 403


def test_invalid_config_gives_an_errored_pipeline(api, repo: Path) -> None:
    commit_files(
        repo,
        {
            ".circleci/config.yml": TRIVIAL_CONFIG.replace(
                "      - hello", "      - hello\n      - no_such_job"
            )
        },
        "Break the config",
    )
    created = trigger(api)
    done = wait_pipeline(api, created["id"])
    pipeline = done["pipeline"]
    assert pipeline["state"] == "errored"
    [error] = pipeline["errors"]
    assert error["type"] == "config"
    assert "no_such_job" in error["message"] and ".circleci/config.yml" in error["message"]
    assert api.get(f"/pipeline/{created['id']}/workflow").json()["items"] == []
    config = api.get(f"/pipeline/{created['id']}/config").json()
    assert "no_such_job" in config["source"] and config["compiled"] == ""


def test_unknown_branch_gives_a_config_fetch_error(api) -> None:
    created = trigger(api, {"branch": "no-such-branch"})
    pipeline = wait_pipeline(api, created["id"])["pipeline"]
    assert pipeline["state"] == "errored"
    assert pipeline["errors"][0]["type"] == "config-fetch"
    assert "no-such-branch" in pipeline["errors"][0]["message"]


def test_tag_and_pipeline_run_read_the_config_at_that_revision(api, repo: Path) -> None:
    # CircleCI runs a job for a tag only when its filters ask for tags.
    tagged = commit_files(
        repo,
        {
            ".circleci/config.yml": TRIVIAL_CONFIG.replace(
                "      - hello", "      - hello:\n          filters: {tags: {only: /^v.*/}}"
            )
        },
        "Run on tags",
    )
    git(repo, "tag", "v1")
    commit_files(repo, {".circleci/config.yml": "version: 2.1\nnot: valid\n"}, "Break main")
    by_tag = wait_pipeline(api, trigger(api, {"tag": "v1"})["id"])
    assert by_tag["pipeline"]["vcs"]["revision"] == tagged
    assert by_tag["workflows"][0]["status"] == "success"
    assert by_tag["pipeline"]["vcs"]["tag"] == "v1"

    response = api.post(
        "/project/gh/udacity/rollback-lab/pipeline/run",
        json={"config": {"tag": "v1"}, "checkout": {"tag": "v1"}},
    )
    assert response.status_code == 201, response.text
    run = wait_pipeline(api, response.json()["id"])
    assert run["workflows"][0]["status"] == "success"
    broken = wait_pipeline(api, trigger(api, {"branch": "main"})["id"])
    assert broken["pipeline"]["state"] == "errored"
    bad = api.post(f"/project/{SLUG}/pipeline/run", json={"config": {"branch": 3}})
    assert bad.status_code == 400 and "config.'branch'" in bad.json()["message"]


def test_rerun_from_failed_and_cancel(api, repo: Path) -> None:
    commit_files(
        repo,
        {
            ".circleci/config.yml": """\
version: 2.1
jobs:
  ok:
    docker: [{image: cimg/base:stable}]
    steps: [{run: "true"}]
  flaky:
    docker: [{image: cimg/base:stable}]
    steps: [{run: "test -f /tmp/never-there-$CIRCLE_PIPELINE_ID"}]
  slow:
    docker: [{image: cimg/base:stable}]
    steps: [{run: sleep 60}]
workflows:
  main:
    jobs: [ok, flaky]
  long:
    jobs: [slow]
"""
        },
        "Three jobs",
    )
    created = trigger(api)
    wf = {}

    def main_done() -> bool:
        items = api.get(f"/pipeline/{created['id']}/workflow").json()["items"]
        wf.update({w["name"]: w for w in items})
        return "main" in wf and wf["main"]["status"] == "failed" and "long" in wf

    wait_for(main_done)
    jobs = {j["name"]: j for j in api.get(f"/workflow/{wf['main']['id']}/job").json()["items"]}
    assert (jobs["ok"]["status"], jobs["flaky"]["status"]) == ("success", "failed")

    response = api.post(f"/workflow/{wf['main']['id']}/rerun", json={"from_failed": True})
    assert response.status_code == 202
    new_id = response.json()["workflow_id"]
    assert new_id != wf["main"]["id"]
    rerun = wait_for(
        lambda: (
            (w := api.get(f"/workflow/{new_id}").json())["status"] in ("failed", "success") and w
        )
    )
    assert rerun["name"] == "main" and rerun["pipeline_id"] == created["id"]
    rerun_jobs = {j["name"]: j for j in api.get(f"/workflow/{new_id}/job").json()["items"]}
    assert rerun_jobs["flaky"]["status"] == "failed"
    assert rerun_jobs["flaky"]["job_number"] != jobs["flaky"]["job_number"]
    names = [w["name"] for w in api.get(f"/pipeline/{created['id']}/workflow").json()["items"]]
    assert names.count("main") == 2

    bad = api.post(f"/workflow/{wf['main']['id']}/rerun", json={"from_failed": "yes"})
    assert bad.status_code == 400

    slow_id = wf["long"]["id"]
    wait_for(
        lambda: (
            [j["status"] for j in api.get(f"/workflow/{slow_id}/job").json()["items"]]
            == ["running"]
        )
    )
    response = api.post(f"/workflow/{slow_id}/cancel")
    assert response.status_code == 202 and "message" in response.json()
    canceled = wait_for(
        lambda: (w := api.get(f"/workflow/{slow_id}").json())["status"] == "canceled" and w
    )
    assert canceled["canceled_by"] == api.get("/me").json()["id"]
    [slow] = api.get(f"/workflow/{slow_id}/job").json()["items"]
    assert slow["status"] == "canceled"


def test_cancel_job_by_number(api, repo: Path) -> None:
    commit_files(
        repo,
        {
            ".circleci/config.yml": TRIVIAL_CONFIG.replace(
                'echo "hello from $CIRCLE_JOB"', "sleep 60"
            )
        },
        "Slow",
    )
    created = trigger(api)

    def running_job():
        items = api.get(f"/pipeline/{created['id']}/workflow").json()["items"]
        if not items:
            return None
        jobs = api.get(f"/workflow/{items[0]['id']}/job").json()["items"]
        return jobs[0] if jobs and jobs[0]["status"] == "running" else None

    job = wait_for(running_job)
    response = api.post(f"/project/{SLUG}/job/{job['job_number']}/cancel")
    assert response.status_code == 200
    done = wait_pipeline(api, created["id"])
    [workflow] = done["workflows"]
    assert done["jobs"][workflow["id"]][0]["status"] == "canceled"
    assert workflow["status"] in ("canceled", "failed")


# --- a classroom at once ----------------------------------------------------------------------


def test_twenty_pipelines_at_once_all_finish_with_bounded_concurrency(
    state_dir: Path, repo: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"  # every job waits for it: the queue can be seen, not raced
    commit_files(
        repo,
        {
            ".circleci/config.yml": TRIVIAL_CONFIG.replace(
                'echo "hello from $CIRCLE_JOB"',
                f"while [ ! -f {gate} ]; do sleep 0.05; done; echo hello",
            )
        },
        "Wait for the gate",
    )
    linked(state_dir, repo)
    with local_circleci(state_dir, max_concurrent_jobs=2) as served, client(served) as api:
        created = [trigger(api) for _ in range(20)]
        assert sorted(p["number"] for p in created) == list(range(1, 21))

        def jobs() -> list[dict]:
            out = []
            for pipeline in created:
                for wf in api.get(f"/pipeline/{pipeline['id']}/workflow").json()["items"]:
                    out += api.get(f"/workflow/{wf['id']}/job").json()["items"]
            return out

        def counts() -> dict[str, int]:
            found = [job["status"] for job in jobs()]
            return {status: found.count(status) for status in set(found)}

        # Two slots: two jobs run, the eighteen others report `queued`.
        wait_for(lambda: counts() == {"running": 2, "queued": 18}, timeout=60)
        gate.touch()
        wait_for(lambda: counts() == {"success": 20}, timeout=120, interval=0.2)
        spans = []
        for job in jobs():
            details = api.get(f"/project/{SLUG}/job/{job['job_number']}").json()
            spans.append((details["started_at"], details["stopped_at"]))
        assert max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans) <= 2

        first = api.get(f"/project/{SLUG}/pipeline").json()
        assert [p["number"] for p in first["items"]] == list(range(20, 0, -1))
        assert first["next_page_token"] is None  # exactly one page
        trigger(api, {"branch": "no-such-branch"})  # a 21st pipeline, on another page
        first = api.get(f"/project/{SLUG}/pipeline").json()
        assert len(first["items"]) == 20 and first["next_page_token"]
        second = api.get(
            f"/project/{SLUG}/pipeline", params={"page-token": first["next_page_token"]}
        ).json()
        assert [p["number"] for p in second["items"]] == [1]
        assert second["next_page_token"] is None
        only_main = api.get(f"/project/{SLUG}/pipeline", params={"branch": "main"}).json()
        assert all(p["vcs"]["branch"] == "main" for p in only_main["items"])
        by_number = api.get(f"/project/{SLUG}/pipeline/7").json()
        assert by_number["id"] == created[6]["id"]


# --- down / up --------------------------------------------------------------------------------


def test_history_survives_a_restart_and_running_jobs_end_infrastructure_fail(
    state_dir: Path, repo: Path, tmp_path: Path
) -> None:
    linked(state_dir, repo)
    marker = tmp_path / "sleeper.pid"
    with local_circleci(state_dir) as served, client(served) as api:
        done = wait_pipeline(api, trigger(api)["id"])
        finished_job = done["jobs"][done["workflows"][0]["id"]][0]
        commit_files(
            repo,
            {
                ".circleci/config.yml": TRIVIAL_CONFIG.replace(
                    'echo "hello from $CIRCLE_JOB"', f"echo started; echo $$ > {marker}; sleep 300"
                )
            },
            "Sleep",
        )
        sleeping = trigger(api)

        def running():
            items = api.get(f"/pipeline/{sleeping['id']}/workflow").json()["items"]
            jobs = api.get(f"/workflow/{items[0]['id']}/job").json()["items"] if items else []
            return jobs and jobs[0]["status"] == "running" and marker.exists() and jobs[0]

        job = wait_for(running)
    # The server is closed: the step's process is gone, not left running on the machine.
    pid = int(marker.read_text())
    wait_for(lambda: not _alive(pid), timeout=20)

    with local_circleci(state_dir) as served, client(served) as api:
        again = api.get(f"/pipeline/{done['pipeline']['id']}").json()
        assert again["number"] == 1 and again["state"] == "created"
        [wf] = api.get(f"/pipeline/{done['pipeline']['id']}/workflow").json()["items"]
        assert wf["status"] == "success"
        details = api.get(f"/project/{SLUG}/job/{finished_job['job_number']}").json()
        assert details["status"] == "success"

        interrupted = api.get(f"/project/{SLUG}/job/{job['job_number']}").json()
        assert interrupted["status"] == "infrastructure_fail"
        assert interrupted["stopped_at"] is not None
        assert "stopped while this job was running" in interrupted["messages"][0]["message"]
        [wf] = api.get(f"/pipeline/{sleeping['id']}/workflow").json()["items"]
        assert wf["status"] == "failed" and wf["stopped_at"] is not None

        with client(served, version="v1.1") as v1:
            build = v1.get(f"/project/gh/udacity/rollback-lab/{job['job_number']}").json()
        assert build["status"] == "infrastructure_fail"
        last = build["steps"][-1]["actions"][0]
        assert last["status"] == "failed"
        text = "".join(line["message"] for line in httpx.get(last["output_url"]).json())
        assert "started" in text and "stopped while this job was running" in text

        # Numbers go on from where they were; the new run works.
        nxt = trigger(api)
        assert nxt["number"] == 3


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_state_dir_crash_recovery_without_close(state_dir: Path, repo: Path) -> None:
    """A killed server (no close) leaves `running` rows; the next start ends them."""
    from helpers.localci.store import Store

    linked(state_dir, repo)
    store = Store.in_state_dir(state_dir)
    try:
        pipeline = store.create_pipeline(SLUG, actor="student", branch="main", state="pending")
        recorder = store.recorder(pipeline.id, SLUG)
        from datetime import datetime, timezone

        at = datetime.now(timezone.utc)
        recorder.workflow_created("00000000-0000-4000-8000-000000000001", "main", at)
        recorder.job_created(
            "00000000-0000-4000-8000-000000000001",
            "00000000-0000-4000-8000-000000000002",
            "build",
            [],
            "queued",
        )
        number = recorder.job_number("00000000-0000-4000-8000-000000000002")
        recorder.job_status("00000000-0000-4000-8000-000000000002", "running", at)
        recorder.step_started("00000000-0000-4000-8000-000000000002", 0, "Build", at)
    finally:
        store.close()  # no fail_interrupted: as if the process had been killed
    with local_circleci(state_dir) as served, client(served) as api:
        job = api.get(f"/project/{SLUG}/job/{number}").json()
        assert job["status"] == "infrastructure_fail"
        assert api.get(f"/pipeline/{pipeline.id}").json()["state"] == "created"
