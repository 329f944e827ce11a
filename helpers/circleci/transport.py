"""The one layer where the token is attached and faults are retried: an httpx transport.

``TokenTransport`` adds ``Circle-Token`` to a *copy* of each request bound for the CircleCI host,
so the requests httpx keeps (``response.request``, exceptions, reprs) never hold the token, and
logs on other hosts (``output_url`` on S3) never receive it.

``RetryTransport`` decides, per attempt, whether another try is safe:
- 429: always (CircleCI refused the request without acting), after ``Retry-After``;
- connection never made (connect error/timeout, pool timeout): always;
- 5xx, or a connection dropped after the request was sent: only for idempotent methods. A
  POST that may have reached the server is never repeated: a pipeline is triggered at most once.
Waits grow exponentially with full jitter, bounded by ``attempts`` and ``total`` seconds.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx
from pydantic import SecretStr

from helpers.circleci.errors import redact_url

log = logging.getLogger("helpers.circleci")

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass
class RetryPolicy:
    """How hard to try. Tests pass tiny waits and a fake ``sleep``; defaults suit circleci.com."""

    attempts: int = 5  # tries in all, the first included
    backoff: float = 0.5  # first wait (s); doubles each time, with full jitter
    max_backoff: float = 8.0
    total: float = 60.0  # no retry starts after this many seconds since the first try
    max_retry_after: float = 60.0  # a longer Retry-After is not waited for
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)

    def backoff_for(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(max, base·2^retry)] (AWS's advice for many clients)."""
        ceiling = min(self.max_backoff, self.backoff * (2**retry))
        return self.rng.uniform(0, ceiling)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; ``None`` if absent or garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


class TokenTransport(httpx.BaseTransport):
    """Adds ``Circle-Token`` to requests for ``host`` only, on a copy of the request."""

    def __init__(self, inner: httpx.BaseTransport, token: str, host: str) -> None:
        self._inner = inner
        self._token = SecretStr(token)
        self._origin = httpx.URL(host)

    def __repr__(self) -> str:
        return f"TokenTransport(host={str(self._origin)!r}, token=***)"

    def _same_origin(self, url: httpx.URL) -> bool:
        return (url.scheme, url.host, url.port) == (
            self._origin.scheme,
            self._origin.host,
            self._origin.port,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self._same_origin(request.url):
            return self._inner.handle_request(request)
        headers = request.headers.copy()
        headers["Circle-Token"] = self._token.get_secret_value()
        signed = httpx.Request(
            request.method,
            request.url,
            headers=headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return self._inner.handle_request(signed)

    def close(self) -> None:
        self._inner.close()


class RetryTransport(httpx.BaseTransport):
    """Retries what is safe to retry (see the module's docstring) and nothing else."""

    def __init__(self, inner: httpx.BaseTransport, policy: RetryPolicy | None = None) -> None:
        self._inner = inner
        self.policy = policy or RetryPolicy()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        policy = self.policy
        started = policy.clock()
        safe_to_repeat = request.method.upper() in IDEMPOTENT
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= policy.attempts
            try:
                response = self._inner.handle_request(request)
            except NOT_SENT as exc:
                wait = policy.backoff_for(attempt - 1)
                if last or not self._time_left(started, wait):
                    raise
                self._note(request, f"could not connect ({type(exc).__name__})", wait, attempt)
            except (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError) as exc:
                wait = policy.backoff_for(attempt - 1)
                if not safe_to_repeat or last or not self._time_left(started, wait):
                    raise
                self._note(request, f"connection dropped ({type(exc).__name__})", wait, attempt)
            else:
                wait = self._wait_for(response, attempt, safe_to_repeat)
                if wait is None or last or not self._time_left(started, wait):
                    return response
                response.read()
                response.close()
                self._note(request, f"answered {response.status_code}", wait, attempt)
            policy.sleep(wait)

    def _wait_for(self, response: httpx.Response, attempt: int, safe: bool) -> float | None:
        """Seconds to wait before retrying this response, or ``None`` to hand it back."""
        if response.status_code == 429:
            advised = parse_retry_after(response.headers.get("Retry-After"))
            if advised is None:
                return self.policy.backoff_for(attempt - 1)
            return advised if advised <= self.policy.max_retry_after else None
        if response.status_code >= 500 and safe:
            return self.policy.backoff_for(attempt - 1)
        return None

    def _time_left(self, started: float, wait: float) -> bool:
        return self.policy.clock() + wait - started <= self.policy.total

    def _note(self, request: httpx.Request, what: str, wait: float, attempt: int) -> None:
        log.warning(
            "CircleCI %s %s %s; retrying in %.1fs (attempt %d of %d)",
            request.method,
            redact_url(str(request.url)),
            what,
            wait,
            attempt + 1,
            self.policy.attempts,
        )

    def close(self) -> None:
        self._inner.close()
