"""The local services process: up / status / down, detached, one instance per state dir, stale
state replaced, and a helpful error when the services are needed but not running."""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from helpers.errors import ServicesNotRunning
from helpers.services import (
    Endpoints,
    ensure_services,
    require_services,
    resolve_state_dir,
    services_status,
    stop_services,
)
from helpers.services import daemon as daemon_mod
from helpers.services.state import (
    STATE_FILE,
    ServiceState,
    pid_alive,
    read_state,
    write_state,
)

CLI = Path(sys.executable).with_name("rollback-lab")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """ensure_services sets AWS_*/CIRCLE* here; give them back afterwards."""
    saved = dict(os.environ)
    monkeypatch.setenv("ROLLBACK_LAB_CFN_STEP_SECONDS", "0.02")
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def state_dirs(tmp_path: Path, clean_env: None) -> Iterator[list[Path]]:
    """Temp state dirs whose instances are all stopped at the end, whatever happened."""
    made: list[Path] = []

    def teardown() -> None:
        for directory in made:
            recorded = read_state(directory)
            stop_services(directory)
            if recorded is not None:
                assert not pid_alive(recorded.pid)

    yield made
    teardown()


def new_dir(dirs: list[Path], tmp_path: Path, name: str) -> Path:
    directory = tmp_path / name
    dirs.append(directory)
    return directory


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=120, check=False
    )


def cloudformation(endpoints: Endpoints):  # noqa: ANN201 (a boto3 client)
    return boto3.client(
        "cloudformation",
        endpoint_url=endpoints.aws_endpoint_url,
        region_name=endpoints.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


SECURITY_GROUP_TEMPLATE = (
    '{"Resources": {"G": {"Type": "AWS::EC2::SecurityGroup", '
    '"Properties": {"GroupDescription": "g"}}}}'
)


def test_up_status_down_up_and_two_instances_side_by_side(
    state_dirs: list[Path], tmp_path: Path
) -> None:
    directory = new_dir(state_dirs, tmp_path, "a")
    up = cli("up", "--state-dir", str(directory), "--json")
    assert up.returncode == 0, up.stderr
    first = json.loads(up.stdout)
    assert first["aws_endpoint_url"].startswith("http://127.0.0.1:")
    assert first["region"] == "us-east-1"
    if importlib.util.find_spec("helpers.localci.api") is not None:
        # The daemon hosts the local CircleCI API; its token is shown by `up --json` only.
        assert first["circleci_url"].startswith("http://127.0.0.1:"), first.get("circleci_error")
        assert first["circle_token"]
    else:
        assert first["circleci_url"] is None
    # The `up` process has exited: the services live on, detached from it.
    status = cli("status", "--state-dir", str(directory), "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["running"] is True
    if first["circle_token"]:
        assert first["circle_token"] not in status.stdout
        assert first["circle_token"] not in (directory / "services.log").read_text()
    again = json.loads(cli("up", "--state-dir", str(directory), "--json").stdout)
    assert (again["pid"], again["aws_endpoint_url"]) == (first["pid"], first["aws_endpoint_url"])
    assert stat.S_IMODE((directory / STATE_FILE).stat().st_mode) == 0o600
    endpoints_a = services_status(directory)
    assert endpoints_a is not None and endpoints_a.pid == first["pid"]
    cloudformation(endpoints_a).create_stack(
        StackName="only-in-a", TemplateBody=SECURITY_GROUP_TEMPLATE
    )

    # A second state dir is a second, independent instance.
    endpoints_b = ensure_services(new_dir(state_dirs, tmp_path, "b"))
    assert endpoints_b.pid != endpoints_a.pid
    assert endpoints_b.aws_endpoint_url != endpoints_a.aws_endpoint_url
    assert os.environ["AWS_ENDPOINT_URL"] == endpoints_b.aws_endpoint_url
    assert cloudformation(endpoints_b).describe_stacks()["Stacks"] == []

    down = cli("down", "--state-dir", str(directory))
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not pid_alive(first["pid"])
    assert not (directory / STATE_FILE).exists()
    assert cli("status", "--state-dir", str(directory)).returncode == 1
    assert "not running" in cli("down", "--state-dir", str(directory)).stdout
    assert services_status(endpoints_b.state_dir) == endpoints_b  # b did not notice

    restarted = ensure_services(directory)
    assert restarted.pid != first["pid"]
    assert cloudformation(restarted).describe_stacks()["Stacks"] == []  # a fresh AWS
    assert stop_services(endpoints_b.state_dir) is True
    assert services_status(endpoints_b.state_dir) is None
    assert services_status(directory) == restarted


class _Foreign(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def foreign_server() -> Iterator[str]:
    """Another program's HTTP server, on the port a stale state file points at."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Foreign)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _free_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _stale(pid: int, url: str) -> ServiceState:
    return ServiceState(
        pid=pid,
        instance_id="0123456789abcdef",
        aws_endpoint_url=url,
        region="us-east-1",
        circleci_url=None,
        circle_token=None,
        circleci_error=None,
        started_at="2020-01-01T00:00:00+00:00",
    )


def test_up_env_prints_exports_a_shell_can_eval(state_dirs: list[Path], tmp_path: Path) -> None:
    directory = new_dir(state_dirs, tmp_path, "env")
    up = cli("up", "--state-dir", str(directory), "--json")
    assert up.returncode == 0, up.stderr
    started = json.loads(up.stdout)
    # a real bash evaluates the lines: what a student types after `rollback-lab up`
    script = f'eval "$({CLI} up --state-dir {directory} --env)" && env'
    shell = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )
    env = dict(line.split("=", 1) for line in shell.stdout.splitlines() if "=" in line)
    assert env["ROLLBACK_LAB_STATE_DIR"] == str(directory.resolve())
    assert env["AWS_ENDPOINT_URL"] == started["aws_endpoint_url"]
    assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == started["region"]
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]
    if started["circleci_url"]:
        assert env["CIRCLECI_CLI_HOST"] == started["circleci_url"]
        assert env["CIRCLE_TOKEN"] == started["circle_token"]
        # asked for neither env nor JSON output: no token
        plain = cli("up", "--state-dir", str(directory))
        assert "export CIRCLECI_CLI_HOST=" in plain.stdout
        assert started["circle_token"] not in plain.stdout
    both = cli("up", "--state-dir", str(directory), "--env", "--json")
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_stale_state_is_never_trusted_and_is_replaced(
    state_dirs: list[Path], tmp_path: Path, foreign_server: str
) -> None:
    stale_cases = {
        "dead pid": _stale(_dead_pid(), _free_port_url()),
        "port taken by another program": _stale(os.getpid(), foreign_server),
        "pid reused by another program": _stale(os.getpid(), _free_port_url()),
    }
    for case, stale in stale_cases.items():
        directory = tmp_path / case.replace(" ", "-")
        directory.mkdir()
        write_state(directory, stale)
        assert services_status(directory) is None, case
        with pytest.raises(ServicesNotRunning):
            require_services(directory)
        assert cli("status", "--state-dir", str(directory)).returncode == 1, case

    directory = new_dir(state_dirs, tmp_path, "replaced")
    directory.mkdir()
    write_state(directory, stale_cases["port taken by another program"])
    endpoints = ensure_services(directory)
    assert endpoints.pid not in (os.getpid(), 0)
    assert endpoints.aws_endpoint_url != foreign_server
    assert read_state(directory).pid == endpoints.pid  # type: ignore[union-attr]
    assert pid_alive(os.getpid())  # the stale pid's process was left alone


def test_services_not_running_says_how_to_start_them(tmp_path: Path, clean_env: None) -> None:
    with pytest.raises(ServicesNotRunning) as raised:
        require_services(tmp_path / "nothing-here")
    message = str(raised.value)
    assert "rollback-lab up" in message and "make demo" in message
    assert str(tmp_path / "nothing-here") in message
    assert stop_services(tmp_path / "nothing-here") is False
    result = cli("status", "--state-dir", str(tmp_path / "nothing-here"))
    assert result.returncode == 1 and "rollback-lab up" in result.stdout


def test_state_dir_comes_from_argument_then_environment_then_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLLBACK_LAB_STATE_DIR", str(tmp_path / "from-env"))
    assert resolve_state_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_state_dir() == tmp_path / "from-env"
    monkeypatch.delenv("ROLLBACK_LAB_STATE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_state_dir() == tmp_path / "cache" / "rollback-lab" / "state"


def test_circle_token_never_shows_in_repr_str_or_default_json(tmp_path: Path) -> None:
    endpoints = Endpoints(
        aws_endpoint_url="http://127.0.0.1:1",
        region="us-east-1",
        circleci_url="http://127.0.0.1:2",
        circle_token="s3cr3t-token",
        state_dir=tmp_path,
        pid=1,
    )
    assert "s3cr3t-token" not in repr(endpoints) + str(endpoints)
    assert "s3cr3t-token" not in json.dumps(endpoints.as_json())
    assert endpoints.as_json(include_secrets=True)["circle_token"] == "s3cr3t-token"
    assert endpoints.circleci_env() == {
        "CIRCLECI_CLI_HOST": "http://127.0.0.1:2",
        "CIRCLE_TOKEN": "s3cr3t-token",
    }
    assert endpoints.aws_env()["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"


class _Served:
    url = "http://127.0.0.1:9"
    token = "t"

    def close(self) -> None:
        pass


def test_daemon_hosts_the_circleci_api_through_its_serve_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Path, dict[str, str]]] = []

    class FakeApi:
        @staticmethod
        def serve(state_dir: Path, aws_env: dict[str, str]) -> _Served:
            calls.append((state_dir, dict(aws_env)))
            return _Served()

    monkeypatch.setattr(daemon_mod.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(daemon_mod.importlib, "import_module", lambda name: FakeApi)
    served, error = daemon_mod._start_circleci(tmp_path, {"AWS_ENDPOINT_URL": "http://x"})
    assert (served.url, error) == ("http://127.0.0.1:9", None)
    assert calls == [(tmp_path, {"AWS_ENDPOINT_URL": "http://x"})]

    def broken(name: str) -> object:
        raise RuntimeError("cannot start")

    monkeypatch.setattr(daemon_mod.importlib, "import_module", broken)
    assert daemon_mod._start_circleci(tmp_path, {}) == (None, "RuntimeError: cannot start")
    monkeypatch.setattr(daemon_mod.importlib.util, "find_spec", lambda name: None)
    assert daemon_mod._start_circleci(tmp_path, {}) == (None, None)
