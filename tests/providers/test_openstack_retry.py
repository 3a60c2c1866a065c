"""The retry policy and the exception translation at the provider boundary."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
import requests
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as sdk_exc

from tenantshift.providers import NotFoundError, ProviderError
from tenantshift.providers.openstack.connection import (
    Caller,
    ConflictError,
    ForbiddenError,
    RetryPolicy,
    classify,
)


def http_error(
    status: int, message: str = "boom", headers: dict[str, str] | None = None
) -> Exception:
    """The exception openstacksdk raises for a JSON error response (as Neutron sends them)."""
    response = requests.Response()
    response.status_code = status
    response.headers.update({"content-type": "application/json", **(headers or {})})
    response._content = json.dumps({"NeutronError": {"message": message}}).encode()
    try:
        sdk_exc.raise_from_response(response)
    except sdk_exc.SDKException as exc:
        return exc
    raise AssertionError("no exception raised")


class Clock:
    """A fake clock that sleeping advances, so budgets are tested without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def time(self) -> float:
        return self.now


def caller(clock: Clock, **policy: Any) -> Caller:
    return Caller(
        "devcloud-dst",
        RetryPolicy(rng=random.Random(7), sleep=clock.sleep, clock=clock.time, **policy),
    )


def failing(*errors: Exception, result: Any = "ok") -> tuple[Callable[[], Any], list[int]]:
    calls = [0]

    def fn() -> Any:
        calls[0] += 1
        if calls[0] <= len(errors):
            raise errors[calls[0] - 1]
        return result

    return fn, calls


def test_429_waits_as_long_as_retry_after_says() -> None:
    clock = Clock()
    fn, calls = failing(http_error(429, "slow down", {"Retry-After": "3"}))
    assert caller(clock)("network.networks", fn) == "ok"
    assert calls[0] == 2
    assert clock.sleeps[0] >= 3.0


@pytest.mark.parametrize(
    "error",
    [
        http_error(503, "unavailable"),
        http_error(502),
        http_error(500),
        ksa_exc.ConnectFailure("Connection reset by peer"),
        ksa_exc.ConnectTimeout("read timed out"),
        requests.exceptions.ConnectionError("reset"),
    ],
    ids=["503", "502", "500", "reset", "timeout", "requests-reset"],
)
def test_transient_failures_are_retried_with_backoff(error: Exception) -> None:
    clock = Clock()
    fn, calls = failing(error, error)
    assert caller(clock)("network.create_network", fn) == "ok"
    assert calls[0] == 3
    assert len(clock.sleeps) == 2
    # Exponential with jitter: the second wait is drawn from a higher band than the first.
    assert 0.25 <= clock.sleeps[0] <= 0.5
    assert 0.5 <= clock.sleeps[1] <= 1.0


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, ProviderError), (404, NotFoundError), (409, ConflictError), (403, ForbiddenError)],
)
def test_client_errors_are_not_retried_and_translated(status: int, cls: type[Exception]) -> None:
    clock = Clock()
    fn, calls = failing(http_error(status, "Invalid input for cidr"))
    with pytest.raises(cls) as info:
        caller(clock)("network.create_subnet", fn)
    assert calls[0] == 1
    assert clock.sleeps == []
    text = str(info.value)
    assert "devcloud-dst" in text
    assert "network.create_subnet" in text
    assert f"HTTP {status}" in text
    assert "Invalid input for cidr" in text
    assert info.value.call == "network.create_subnet"  # type: ignore[attr-defined]


def test_exhaustion_names_the_call_and_the_cloud_message() -> None:
    clock = Clock()
    fn, calls = failing(*[http_error(503, "neutron-server is overloaded")] * 10)
    with pytest.raises(ProviderError) as info:
        caller(clock, attempts=6, budget=1000)("network.security_group_rules", fn)
    assert calls[0] == 6
    assert "network.security_group_rules" in str(info.value)
    assert "after 6 attempts" in str(info.value)
    assert "neutron-server is overloaded" in str(info.value)
    # No SDK exception chained: the user sees our message, not a traceback.
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_total_time_is_bounded_by_the_budget() -> None:
    clock = Clock()
    fn, calls = failing(*[ksa_exc.ConnectFailure("reset")] * 50)
    with pytest.raises(ProviderError, match="retry budget of 5s"):
        caller(clock, attempts=50, budget=5.0, max_delay=2.0)("network.ports", fn)
    assert clock.now <= 5.0
    assert 2 < calls[0] < 50


def test_retry_after_longer_than_the_budget_fails_now() -> None:
    clock = Clock()
    fn, calls = failing(http_error(429, "quota of requests", {"Retry-After": "120"}))
    with pytest.raises(ProviderError, match="retry budget"):
        caller(clock, budget=20.0)("compute.keypairs", fn)
    assert calls[0] == 1
    assert clock.sleeps == []


def test_lost_response_of_a_write_is_recovered_not_repeated() -> None:
    clock = Clock()
    fn, calls = failing(ksa_exc.ConnectFailure("Connection aborted"), result="created twice")
    looked: list[int] = []

    def recover() -> str | None:
        looked.append(1)
        return "found the first one"

    assert caller(clock)("network.create_network", fn, recover=recover) == "found the first one"
    assert calls[0] == 1 and looked == [1]


def test_recover_is_not_consulted_after_a_clean_rejection() -> None:
    clock = Clock()
    fn, calls = failing(http_error(429, "slow"), result="created")
    assert caller(clock)("network.create_network", fn, recover=lambda: "wrong") == "created"
    assert calls[0] == 2


def test_classify_reads_http_date_retry_after() -> None:
    failure = classify(http_error(429, "slow", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    assert failure.retryable and failure.retry_after == 0.0
    assert not classify(ksa_exc.SSLError("certificate verify failed")).retryable
    assert not classify(http_error(501)).retryable


def test_lookups_made_while_recovering_do_not_multiply_retries() -> None:
    """All calls failing: a write whose lookup also fails still ends after its own attempts,
    and the error names the write, not the lookup."""
    clock = Clock()
    outer = caller(clock, attempts=4, budget=1000)
    fn, calls = failing(*[http_error(503, "injected")] * 10)
    lookups, lookup_calls = failing(*[http_error(503, "injected")] * 10)

    def recover() -> str | None:
        return outer("network.networks(name)", lookups)

    with pytest.raises(ProviderError) as info:
        outer("network.create_network", fn, recover=recover)
    text = str(info.value)
    assert text.startswith("devcloud-dst: network.create_network failed (after 4 attempts)")
    assert "while checking with network.networks(name)" in text
    assert calls[0] == 1 and lookup_calls[0] == 3  # one write, then one lookup per retry
