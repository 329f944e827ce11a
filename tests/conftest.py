"""Fixtures several test modules share; plain helpers are in ``support`` and ``circleci_fakes``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from circleci_fakes import FakeCircleCI, FakeClock, policy

from helpers.circleci.client import CircleCIClient


@pytest.fixture
def moto_server() -> Iterator[str]:
    """moto's own server (ThreadedMotoServer) on a free loopback port: its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def fake() -> Iterator[FakeCircleCI]:
    """A spec-checking stand-in for circleci.com; the test fails if any body broke the spec."""
    server = FakeCircleCI().start()
    yield server
    server.stop()
    assert server.contract_errors == []


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(fake: FakeCircleCI, clock: FakeClock) -> Iterator[CircleCIClient]:
    """A CircleCIClient on ``fake`` whose retries sleep on ``clock``."""
    with CircleCIClient(token=fake.token, host=fake.url, policy=policy(clock)) as c:
        yield c
