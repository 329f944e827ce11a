"""The local AWS: moto's server with the lab's settings, on a free loopback port.

Settings that moto reads when it is imported (key pair and AMI validation) are put in the
environment before the first ``import moto``, so callers must use :func:`start_aws` (which
imports moto itself) rather than importing moto earlier in the same process.

Start-up time: moto's request routing already loads each service's backend on its first
request, but ``moto.cloudformation`` imports the models of every service CloudFormation can
create (that is how it knows their resource types), and through ``moto.apigateway`` that
pulls in jsonschema, whose optional IRI grammar was the largest single import of the daemon;
``helpers/__init__.py`` keeps it out of every process of the kit.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from helpers.services.state import HEALTH_PATH

REGION = "us-east-1"
# Dummy credentials: moto accepts any; real-looking names keep the aws CLI from looking further.
DUMMY_ACCESS_KEY_ID = "testing"
DUMMY_SECRET_ACCESS_KEY = "testing"

MOTO_SETTINGS = {
    # AWS refuses a RunInstances (and so an AWS::EC2::Instance) naming an unknown key pair or AMI.
    "MOTO_ENABLE_KEYPAIR_VALIDATION": "true",
    "MOTO_ENABLE_AMI_VALIDATION": "true",
}


def aws_env(endpoint_url: str, region: str = REGION) -> dict[str, str]:
    """Environment that sends the aws CLI, boto3 and the lab's jobs to the local AWS."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def configure_moto_environment() -> None:
    """Set moto's switches in this process's environment (before moto is imported)."""
    os.environ.update(MOTO_SETTINGS)
    os.environ.update(aws_env("http://127.0.0.1", REGION))
    os.environ.pop("AWS_ENDPOINT_URL", None)


@dataclass
class AwsServer:
    url: str
    region: str
    _server: Any
    _thread: threading.Thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def _with_health(app: Callable[..., Any], answer: Mapping[str, Any]) -> Callable[..., Any]:
    """Wrap moto's WSGI app so the kit can tell its own server from another on the port."""
    body = json.dumps(dict(answer)).encode()

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH:
            start_response(
                "200 OK",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return app(environ, start_response)

    return wsgi


def start_aws(health_answer: Mapping[str, Any], host: str = "127.0.0.1") -> AwsServer:
    """Start moto (with the CloudFormation fidelity extension) on a free port of ``host``."""
    configure_moto_environment()
    from moto import settings
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from helpers.services import cfn_fidelity

    # Belt and braces: if moto was imported before the environment was set.
    settings.ENABLE_KEYPAIR_VALIDATION = True
    settings.ENABLE_AMI_VALIDATION = True
    cfn_fidelity.install()

    app = _with_health(DomainDispatcherApplication(create_backend_app), health_answer)
    server = make_server(host, 0, app, threaded=True, request_handler=MotoRequestHandler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="moto-server", daemon=True)
    thread.start()
    return AwsServer(url=f"http://{host}:{port}", region=REGION, _server=server, _thread=thread)
