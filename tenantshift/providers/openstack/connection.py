"""Connecting to a cloud, the retry policy, and translating SDK exceptions at the boundary.

Retries are ours rather than keystoneauth's (``status_code_retries``/``connect_retries``): those
honour ``Retry-After`` but have no jitter, no bound on the total time of one call, and retry a
POST whose response was lost as blindly as a GET. Here every call has an attempt limit *and* a
time budget, delays are jittered so parallel workers do not retry in lockstep, and a write whose
outcome is unknown asks a ``recover`` callback (look the resource up) before trying again, so a
lost response never creates a duplicate.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openstack
import openstack.config
import openstack.connection
import requests
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1.session import TCPKeepAliveAdapter
from openstack import exceptions as sdk_exc

from tenantshift import faults
from tenantshift.providers.base import NotFoundError, ProviderError
from tenantshift.providers.openstack.throttle import Throttle

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Statuses worth another try: throttled, or the server (or a proxy before it) failed.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class ConflictError(ProviderError):
    """HTTP 409: the resource exists already, or is in use."""


class ForbiddenError(ProviderError):
    """HTTP 401/403: the credentials may not do this (quota reads for a non-admin, say)."""


@dataclass
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter.

    ``attempts`` counts the first try. ``budget`` caps the wall time of one call including its
    sleeps: a delay that would cross it (a long ``Retry-After``) ends the call instead. An
    attempt that timed out does not count against it: that wait was the server's queue (the
    ``Throttle`` now sends fewer requests at once), and ``attempts`` still bounds the call. A
    create (a call with ``recover``) that timed out is never sent again in the same run.
    """

    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 8.0
    budget: float = 20.0
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def backoff(self, retry: int) -> float:
        """Delay before retry ``retry`` (1-based): half fixed, half random ("equal jitter")."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class Failure:
    """What one failed attempt tells the retry loop."""

    message: str
    status: int | None = None
    retryable: bool = False
    #: The request may have reached the server (lost response): a write may have happened.
    ambiguous: bool = False
    retry_after: float | None = None
    #: No answer within the timeout: the server's queue is longer than the client waits.
    timed_out: bool = False


def _retry_after(response: requests.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:  # the HTTP-date form
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def classify(exc: BaseException) -> Failure:
    """Turn any SDK/keystoneauth/requests exception into a ``Failure``, never re-raising it."""
    if isinstance(exc, sdk_exc.HttpException):
        status = exc.status_code
        detail = str(exc.details or exc.message or "").strip()
        message = f"HTTP {status}: {detail}" if status else detail or type(exc).__name__
        return Failure(
            message=message,
            status=status,
            retryable=status in RETRYABLE_STATUS,
            # A 5xx from a proxy or a dying worker says nothing about whether the write happened.
            ambiguous=status is not None and status >= 500,
            retry_after=_retry_after(exc.response) if status == 429 else None,
        )
    if isinstance(exc, ksa_exc.HttpError):
        status = exc.http_status
        return Failure(
            message=f"HTTP {status}: {exc.message or exc.details or ''}".strip(),
            status=status,
            retryable=status in RETRYABLE_STATUS,
            ambiguous=status is not None and status >= 500,
            retry_after=_retry_after(exc.response) if status == 429 else None,
        )
    if isinstance(exc, ksa_exc.SSLError):
        # A certificate problem does not heal by retrying.
        return Failure(message=f"TLS error: {exc}")
    timed_out = _read_timeout(exc)
    if isinstance(exc, ksa_exc.RetriableConnectionFailure | ksa_exc.UnknownConnectionError):
        # Resets and read timeouts can happen after the server acted on the request.
        return Failure(message=str(exc), retryable=True, ambiguous=True, timed_out=timed_out)
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return Failure(message=str(exc), retryable=True, ambiguous=True, timed_out=timed_out)
    if isinstance(exc, ConnectionError | TimeoutError):
        return Failure(
            message=str(exc) or type(exc).__name__,
            retryable=True,
            ambiguous=True,
            timed_out=timed_out,
        )
    if isinstance(exc, ksa_exc.ClientException | sdk_exc.SDKException):
        return Failure(message=str(exc) or type(exc).__name__)
    return Failure(message=f"{type(exc).__name__}: {exc}")


def _read_timeout(exc: BaseException) -> bool:
    """The request was sent and no answer came in time: the server's queue, not a host that
    cannot be reached (a connect timeout). keystoneauth raises ``ConnectTimeout`` ("Request to
    ... timed out") for both; the requests exception it was raised from tells them apart."""
    if isinstance(exc, ksa_exc.ConnectTimeout):
        exc = exc.__context__ or exc
    return isinstance(exc, requests.exceptions.ReadTimeout)


def to_provider_error(label: str, call: str, failure: Failure, attempts: int) -> ProviderError:
    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
    text = f"{label}: {call} failed{tries}: {failure.message}"
    cls: type[ProviderError] = ProviderError
    if failure.status == 404:
        cls = NotFoundError
    elif failure.status == 409:
        cls = ConflictError
    elif failure.status in (401, 403):
        cls = ForbiddenError
    error = cls(text, call=call, retryable=failure.retryable)
    error.failure = failure  # type: ignore[attr-defined]  # for an enclosing call's message
    return error


class Caller:
    """Runs SDK calls under the retry policy, counting HTTP requests, translating exceptions."""

    def __init__(self, label: str, policy: RetryPolicy | None = None) -> None:
        self.label = label
        self.policy = policy or RetryPolicy()
        self._lock = threading.Lock()
        self._nested = threading.local()
        self.requests = 0
        self.throttle = Throttle(label)

    def count_request(self, *_args: Any, **_kwargs: Any) -> None:
        """A ``requests`` response hook: one HTTP request completed (any status)."""
        with self._lock:
            self.requests += 1

    def __call__(
        self,
        call: str,
        fn: Callable[[], T],
        *,
        recover: Callable[[], T | None] | None = None,
    ) -> T:
        """Run ``fn`` until it succeeds, fails for good, or the attempts/budget run out.

        ``recover`` is for writes: after an attempt whose outcome is unknown, it looks for the
        result of that attempt (``None``: it did not happen) before the write is sent again.
        Every call is a fault point of the kill tests (``tenantshift.faults``).
        """
        with faults.cloud_call(call):
            return self._retrying(call, fn, recover)

    def _retrying(
        self, call: str, fn: Callable[[], T], recover: Callable[[], T | None] | None
    ) -> T:
        policy = self.policy
        # Calls made by ``recover`` run inside this loop: one attempt each, so the attempts and
        # the budget of the outer call bound everything (no retries multiplied by retries).
        nested = getattr(self._nested, "depth", 0) > 0
        attempts = 1 if nested else policy.attempts
        start = policy.clock()
        attempt = 0
        unsure = False
        #: Set when a create timed out: it is looked up again, never sent again.
        no_resend: Failure | None = None
        while True:
            attempt += 1
            sent_at = policy.clock()
            sent_in = self.throttle.round
            try:
                with self.throttle.slot() as sent_in:
                    sent_at = policy.clock()
                    if unsure and recover is not None:
                        found = self._recover(call, recover)
                        if found is not None:
                            log.info(
                                "%s: %s had succeeded, its response was lost", self.label, call
                            )
                            self.throttle.answered()
                            return found
                        if no_resend is not None:
                            raise to_provider_error(self.label, call, no_resend, attempt)
                    result = fn()
                self.throttle.answered()
                return result
            except _RecoverFailed as exc:
                failure = exc.failure
            except ProviderError:
                raise  # already ours (raised by a nested call)
            except Exception as exc:
                failure = classify(exc)
            if failure.timed_out and not nested:
                self.throttle.timed_out(sent_in)
                start += policy.clock() - sent_at  # the server's queue, not our budget
                if recover is not None and no_resend is None:
                    # A create that timed out may have been done (a slow answer: the look-up
                    # finds it) or may still wait in the server's queue: then the look-up
                    # misses it, and sending it again can make it twice (Neutron checks
                    # duplicate rules without a lock). Only looked up in this run: the next
                    # run looks again when the queue is long gone.
                    no_resend = Failure(
                        f"{failure.message}; the cloud may still carry it out, so it is not "
                        "sent again in this run: run apply again, which looks for it first"
                    )
            unsure = unsure or failure.ambiguous
            if not failure.retryable or attempt >= attempts:
                raise to_provider_error(self.label, call, failure, attempt) from None
            delay = policy.backoff(attempt)
            if failure.retry_after is not None:
                delay = max(delay, failure.retry_after)
            if policy.clock() - start + delay > policy.budget:
                raise to_provider_error(
                    self.label,
                    call,
                    Failure(
                        f"{failure.message}; gave up, the retry budget of "
                        f"{policy.budget:g}s is spent",
                        failure.status,
                    ),
                    attempt,
                ) from None
            log.warning(
                "%s: %s: %s; retry %d in %.1fs", self.label, call, failure.message, attempt, delay
            )
            policy.sleep(delay)

    def _recover(self, call: str, recover: Callable[[], T | None]) -> T | None:
        self._nested.depth = getattr(self._nested, "depth", 0) + 1
        try:
            return recover()
        except ProviderError as exc:
            inner: Failure | None = getattr(exc, "failure", None)
            message = inner.message if inner else str(exc)
            raise _RecoverFailed(
                Failure(
                    f"{message} (while checking with {exc.call} whether an earlier attempt of "
                    f"{call} went through)",
                    status=inner.status if inner else None,
                    retryable=exc.retryable,
                    ambiguous=True,
                )
            ) from None
        finally:
            self._nested.depth -= 1


class _RecoverFailed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


#: The read timeout of a snapshot's listings (and the other reads a snapshot makes): one page of
#: thousands of ports takes a loaded Neutron longer than the 30 s a write may take, and a
#: listing that times out once has spent the retry budget (20 s), so it must not time out.
LIST_TIMEOUT = 300.0

_timeout_override = threading.local()


@contextmanager
def longer_timeout(seconds: float) -> Iterator[None]:
    """Requests this thread sends inside the block wait up to ``seconds`` for their answer,
    instead of the connection's ``api_timeout`` (the SDK's list calls take no timeout)."""
    saved = getattr(_timeout_override, "seconds", None)
    _timeout_override.seconds = seconds
    try:
        yield
    finally:
        _timeout_override.seconds = saved


class TimedAdapter(TCPKeepAliveAdapter):
    """keystoneauth's adapter, honouring ``longer_timeout`` for the calling thread."""

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        override = getattr(_timeout_override, "seconds", None)
        if override is not None:
            kwargs["timeout"] = override
        return super().send(request, *args, **kwargs)


#: Connections kept per host when the caller does not say how many calls it overlaps.
DEFAULT_POOL_SIZE = 16


def size_pool(conn: openstack.connection.Connection, size: int) -> None:
    """Keep up to ``size`` connections per host in the session's pool.

    requests keeps 10 per host. Beyond that it still sends the request, on a new connection
    that it closes afterwards ("Connection pool is full, discarding connection"): at a
    parallelism of 50, four calls in five would pay a TCP (and TLS) handshake, a WAN round trip
    or two each, and log a warning. keystoneauth's adapter (TCP keep-alive, TLS settings) is
    replaced by the same adapter with a larger pool (and ``longer_timeout`` for listings).
    """
    session = conn.session.session
    for scheme in ("https://", "http://"):
        old = session.adapters.get(scheme)
        session.mount(
            scheme,
            TimedAdapter(
                pool_maxsize=max(size, 10),
                max_retries=getattr(old, "max_retries", 0),
                tls_ciphers=getattr(old, "tls_ciphers", None),
                tls_min_version=getattr(old, "tls_min_version", None),
            ),
        )
        if old is not None:
            old.close()


def connect(
    connect_kwargs: Mapping[str, Any],
    *,
    config_files: list[str] | None = None,
    api_timeout: float = 30.0,
    overrides: Mapping[str, Any] | None = None,
    pool_size: int = DEFAULT_POOL_SIZE,
) -> openstack.connection.Connection:
    """An ``openstack.connection.Connection`` from ``CloudRef.to_connect_kwargs()``.

    keystoneauth's own retries are switched off (ours wrap every call), and the session keeps
    the auth plugin, not a token: password and application-credential auth re-authenticate by
    themselves when the token expires mid-run. ``overrides`` take further config keys, such as
    ``network_endpoint_override`` (tests put a fault proxy in front of Neutron that way).
    ``pool_size``: how many calls may share a host at once without opening new connections.
    """
    kwargs: dict[str, Any] = dict(connect_kwargs)
    kwargs.update(overrides or {})
    kwargs.setdefault("api_timeout", api_timeout)
    kwargs["connect_retries"] = 0
    kwargs["status_code_retries"] = 0
    try:
        # Inline credentials must not be merged with whatever OS_* variables the shell has.
        extra: dict[str, Any] = {"load_envvars": "auth" not in kwargs}
        if config_files:
            extra["config_files"] = config_files
        config = openstack.config.OpenStackConfig(**extra)
        region = config.get_one(**kwargs)
        conn = openstack.connection.Connection(config=region)
    except Exception as exc:  # config errors must not leak a traceback (nor the auth dict)
        raise ProviderError(
            f"cannot configure the connection: {classify(exc).message}", call="connect"
        ) from None
    size_pool(conn, pool_size)
    return conn
