"""One hierarchy for everything the CircleCI client can fail with, and the token's redaction.

A notebook catches :class:`CircleCIError` (or :class:`helpers.errors.LabError`); the CLI prints
the message and exits 2. Messages never hold the token: every one passes through
:func:`redact` with the secrets the client knows about.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from helpers.errors import LabError

TOKEN_VARIABLES = ("CIRCLE_TOKEN", "CIRCLECI_CLI_TOKEN")
REDACTED = "***"
_SECRET_QUERY = re.compile(r"^sig$|token|signature|credential|secret|key", re.IGNORECASE)
_SECRET_QUERY_IN_TEXT = re.compile(
    r"([?&](?:sig|[^=&\s]*(?:token|signature|credential|secret|key)[^=&\s]*)=)[^&\s\"']+",
    re.IGNORECASE,
)
# loggers that may print a request's URL: httpx's request line, httpcore's traces, our retries
_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "helpers.circleci")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Replace every secret in ``text`` (skipping empty ones, which would match everywhere)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return text


def redact_url(url: str, secrets: Iterable[str | None] = ()) -> str:
    """A URL fit for a message: secret-looking query values (``circle-token``, S3 signatures)
    masked, then any known secret replaced."""
    parts = urlsplit(str(url))
    if parts.query:
        query = [
            (key, REDACTED if _SECRET_QUERY.search(key) else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return redact(urlunsplit(parts), secrets)


class RedactingFilter(logging.Filter):
    """Masks secret query values and every registered token in log records."""

    def __init__(self) -> None:
        super().__init__("rollback-lab-redaction")
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is not ours to fix
            return True
        clean = redact(_SECRET_QUERY_IN_TEXT.sub(rf"\1{REDACTED}", text), self.secrets)
        if clean != text:
            record.msg, record.args = clean, None
        return True


_FILTER = RedactingFilter()


def redact_logs(secret: str) -> None:
    """Keep ``secret`` out of what httpx, httpcore and this package log, from now on."""
    _FILTER.secrets.add(secret)
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


class CircleCIError(LabError):
    """CircleCI (or the local CircleCI) could not do what was asked."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.method = method
        self.url = url

    def __str__(self) -> str:
        return self.message


class AuthError(CircleCIError):
    """No token, or CircleCI rejected it (401/403)."""


class NotFoundError(CircleCIError):
    """404: the project is unknown or not followed, or the pipeline/workflow/job does not exist."""


class BadRequestError(CircleCIError):
    """400/422: CircleCI refused the request body (its message says why)."""


class RateLimited(CircleCIError):
    """429 after the retries allowed; ``retry_after`` is CircleCI's advice in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ServerError(CircleCIError):
    """5xx after the retries allowed (or once, for a request that must not be repeated)."""


class TransportError(CircleCIError):
    """The connection failed or dropped. ``maybe_sent`` says whether CircleCI may have acted."""

    def __init__(self, message: str, *, maybe_sent: bool = False, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.maybe_sent = maybe_sent


class UnexpectedResponse(CircleCIError):
    """CircleCI answered with a body that does not have the shape its spec describes."""


class WatchTimeout(CircleCIError):
    """The pipeline was still running when the watch's time ran out."""

    def __init__(self, message: str, *, jobs: object = None) -> None:
        super().__init__(message)
        self.jobs = jobs  # the DataFrame of jobs as last seen


__all__ = [
    "AuthError",
    "BadRequestError",
    "CircleCIError",
    "NotFoundError",
    "RateLimited",
    "ServerError",
    "TOKEN_VARIABLES",
    "TransportError",
    "UnexpectedResponse",
    "WatchTimeout",
    "redact",
    "redact_logs",
    "redact_url",
]
