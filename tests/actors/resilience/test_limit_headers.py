"""Rate-limit headers are untrusted: any input gives sane figures or none, never an error."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from actors.resilience import LimitConfig, SlidingWindow, TokenBucket, create_multi_limit
from actors.resilience._limit_headers import read_rate_headers
from actors.testing import capture_events

LIMITS: list[tuple[str, LimitConfig]] = [
    ("requests", TokenBucket.per_minute(500)),
    ("tokens", TokenBucket.per_minute(30_000)),
    ("input_tokens", SlidingWindow.per_minute(20_000)),
]
NAMES = (
    [
        f"{prefix}-{kind}-{name}"
        for prefix in ("x-ratelimit",)
        for kind in ("limit", "remaining", "reset")
        for name in ("requests", "tokens", "input_tokens")
    ]
    + [
        f"anthropic-ratelimit-{name}-{kind}"
        for name in ("requests", "tokens", "input-tokens")
        for kind in ("limit", "remaining", "reset")
    ]
    + ["date"]
)
VALUES = st.one_of(
    st.text(max_size=30),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["1s", "6m0s", "20ms", "1656h", "2025-12-01T10:00:01Z", "-0", "1e400"]),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.just("Mon, 01 Dec 2025 10:00:00 GMT"),
)


@settings(max_examples=300, deadline=None)
@given(headers=st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=20), VALUES))
def test_any_headers_give_sane_figures(headers: dict[str, str]) -> None:
    """Whatever the headers say, figures are finite, >= 0, within capacity and horizon."""
    with capture_events():
        seen = read_rate_headers(headers, LIMITS, limiter="llm")
    configs = dict(LIMITS)
    for name, figures in seen.items():
        config = configs[name]
        for value in (figures.limit, figures.remaining, figures.reset_after):
            assert value is None or (math.isfinite(value) and value >= 0)
        assert figures.remaining is None or figures.remaining <= config.max_cost
        horizon = max(60.0, 2 * config.max_cost / config.mean_rate)
        assert figures.reset_after is None or figures.reset_after <= horizon


@pytest.mark.anyio
@pytest.mark.virtual_time
@settings(max_examples=100, deadline=None)
@given(headers=st.dictionaries(st.sampled_from(NAMES), VALUES))
async def test_any_headers_never_raise_a_limit(headers: dict[str, str]) -> None:
    """sync_from_headers never raises and never lifts availability above what it was."""
    multi = create_multi_limit(dict(LIMITS), name="llm")
    await multi.acquire(requests=100, tokens=10_000, input_tokens=5_000)
    before = multi.metrics().available
    with capture_events():
        await multi.sync_from_headers(headers)
    after = multi.metrics().available
    assert all(after[name] <= before[name] + 1e-6 for name in before)
