"""Which AWS the checks and the cleanup talk to, and the questions they ask it.

``AWS_ENDPOINT_URL`` wins (the aws CLI and boto3 both honour it, so the check asks the AWS the
jobs use); otherwise ``LAB_BACKEND=real`` means the real AWS with the usual credential chain, and
anything else the running local services. An AWS that cannot be reached is an
:class:`AwsUnreachable` with the reason, so callers can report "not checked" instead of failing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from helpers.errors import LabError

DEFAULT_REGION = "us-east-1"  # the exercise's region
# Error codes that mean "this AWS will not talk to us", not "the thing asked for is missing".
UNREACHABLE_CODES = frozenset(
    {
        "AuthFailure",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "OptInRequired",
    }
)


class AwsUnreachable(LabError):
    """No AWS answered (not running, no credentials, no network); the message says which."""


@dataclass(frozen=True)
class AwsTarget:
    """Where requests go: an endpoint (None = AWS itself), a region, credentials if local."""

    endpoint_url: str | None
    region: str
    credentials: dict[str, str] | None = None

    @property
    def description(self) -> str:
        where = self.endpoint_url or "AWS"
        return f"{where} ({self.region})"


def aws_target(state_dir: str | os.PathLike[str] | None = None) -> AwsTarget:
    """The AWS this session is configured for; AwsUnreachable when the local one is not up."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if os.environ.get("AWS_ENDPOINT_URL"):
        return AwsTarget(os.environ["AWS_ENDPOINT_URL"], region or DEFAULT_REGION)
    if os.environ.get("LAB_BACKEND", "local") == "real":
        return AwsTarget(None, region or _profile_region() or DEFAULT_REGION)
    from helpers.services import services_status
    from helpers.services.aws import DUMMY_ACCESS_KEY_ID, DUMMY_SECRET_ACCESS_KEY

    endpoints = services_status(state_dir)
    if endpoints is None:
        raise AwsUnreachable(
            "the local AWS is not running; start it with `rollback-lab up`, "
            "or set LAB_BACKEND=real for the real AWS"
        )
    credentials = {
        "aws_access_key_id": DUMMY_ACCESS_KEY_ID,
        "aws_secret_access_key": DUMMY_SECRET_ACCESS_KEY,
    }
    return AwsTarget(endpoints.aws_endpoint_url, endpoints.region, credentials)


def client(service: str, target: AwsTarget | None = None) -> Any:
    """A boto3 client for ``target`` that fails fast instead of retrying for a minute."""
    import boto3
    from botocore.config import Config

    target = target or aws_target()
    config = Config(connect_timeout=3, read_timeout=30, retries={"max_attempts": 2})
    session = boto3.session.Session(region_name=target.region, **(target.credentials or {}))
    return session.client(service, endpoint_url=target.endpoint_url, config=config)


def call(function: Any, **kwargs: Any) -> Any:
    """Call a boto3 operation; connection and credential failures become AwsUnreachable."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
    )

    try:
        return function(**kwargs)
    except NoCredentialsError as exc:
        raise AwsUnreachable("no AWS credentials are configured") from exc
    except NoRegionError as exc:
        raise AwsUnreachable("no AWS region is configured") from exc
    except EndpointConnectionError as exc:
        raise AwsUnreachable(f"cannot connect to {exc.kwargs.get('endpoint_url')}") from exc
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in UNREACHABLE_CODES:
            raise AwsUnreachable(f"AWS refused the request: {_message(exc)}") from exc
        raise
    except BotoCoreError as exc:  # timeouts, proxy errors, ...
        raise AwsUnreachable(f"AWS did not answer: {exc}") from exc


def key_pair_exists(name: str, target: AwsTarget | None = None) -> bool:
    """Whether the EC2 key pair ``name`` exists in the target's account and region."""
    from botocore.exceptions import ClientError

    ec2 = client("ec2", target)
    try:
        call(ec2.describe_key_pairs, KeyNames=[name])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "InvalidKeyPair.NotFound":
            return False
        raise AwsUnreachable(f"describe-key-pairs failed: {_message(exc)}") from exc
    return True


def _message(exc: Any) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', '')}: {error.get('Message', '')}".strip(": ")


def _profile_region() -> str | None:
    import boto3

    return boto3.session.Session().region_name
