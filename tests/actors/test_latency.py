"""LatencyRecorder: windowed percentiles within 4.5 %, a per-slice series, O(1) records."""

from __future__ import annotations

import math
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import ConfigError, LatencyRecorder

TOLERANCE = 2 ** (1 / 16) * 1.0001  # half a bucket at 8 buckets per octave, plus rounding

latencies = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False)


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered) - 1e-9)) - 1]


def close(measured: float | None, exact: float) -> bool:
    return measured is not None and exact / TOLERANCE <= measured <= exact * TOLERANCE


def test_empty_recorder_has_no_quantiles() -> None:
    """With nothing recorded, quantiles are None, the count 0 and the series all None."""
    rec = LatencyRecorder(slices=5)
    assert rec.quantile(0.5, now=3.0) is None
    assert rec.count(now=3.0) == 0
    assert rec.series(now=3.0) == [None] * 5


def test_one_value_is_reported_exactly() -> None:
    """A single latency is every quantile exactly (clamped to the observed min and max)."""
    rec = LatencyRecorder()
    rec.record(0.123, now=10.0)
    assert rec.quantile(0.5, now=10.0) == 0.123
    assert rec.quantile(1.0, now=10.0) == 0.123


@settings(max_examples=200, deadline=None)
@given(st.lists(latencies, min_size=1, max_size=300), st.sampled_from([0.01, 0.5, 0.9, 0.99, 1]))
def test_quantiles_are_within_half_a_bucket(values: list[float], q: float) -> None:
    """Any quantile of recorded values is within 4.5 % of the exact one."""
    rec = LatencyRecorder()
    for value in values:
        rec.record(value, now=1.0)
    assert close(rec.quantile(q, now=1.0), exact_quantile(values, q))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(latencies, st.floats(min_value=0, max_value=3, allow_nan=False)),
        min_size=1,
        max_size=200,
    )
)
def test_window_matches_a_reference_model(steps: list[tuple[float, float]]) -> None:
    """Over random times, count and p50/p99 match the values in the last `slices` slices."""
    rec = LatencyRecorder(slice_seconds=1.0, slices=4)
    seen: list[tuple[int, float]] = []
    now = 0.0
    for value, delay in steps:
        now += delay
        rec.record(value, now)
        seen.append((int(now // 1.0), value))
        head = int(now // 1.0)
        window = [v for number, v in seen if number > head - 4]
        assert rec.count(now) == len(window)
        for q in (0.5, 0.99):
            assert close(rec.quantile(q, now), exact_quantile(window, q))


def test_old_slices_leave_the_window() -> None:
    """Values older than the window no longer count; newer ones still do."""
    rec = LatencyRecorder(slice_seconds=1.0, slices=3)
    rec.record(0.5, now=0.2)
    rec.record(0.1, now=2.5)
    assert rec.count(now=2.9) == 2
    assert rec.count(now=3.0) == 1
    assert rec.quantile(1.0, now=3.0) == 0.1
    assert rec.count(now=100.0) == 0


def test_series_is_one_quantile_per_slice_oldest_first() -> None:
    """series() gives each slice's quantile, None where a slice has no data."""
    rec = LatencyRecorder(slice_seconds=2.0, slices=4)
    rec.record(0.010, now=0.5)
    rec.record(0.200, now=4.1)
    rec.record(0.300, now=6.0)
    assert rec.series(now=6.5) == [0.010, None, 0.200, 0.300]
    assert rec.series(now=8.0) == [None, 0.200, 0.300, None]


def test_out_of_range_values_clamp_to_what_was_seen() -> None:
    """Zero and values past `highest` count in the end buckets and report as observed."""
    rec = LatencyRecorder(highest=10.0)
    rec.record(0.0, now=0.0)
    assert rec.quantile(1.0, now=0.0) == 0.0
    rec.record(50.0, now=0.0)
    assert rec.quantile(1.0, now=0.0) == 50.0
    median = rec.quantile(0.5, now=0.0)
    assert median is not None
    assert median < 2e-6  # the lowest bucket


def test_negative_and_nan_latencies_are_ignored() -> None:
    """A negative or NaN duration is not recorded."""
    rec = LatencyRecorder()
    rec.record(-1.0, now=0.0)
    rec.record(math.nan, now=0.0)
    assert rec.count(now=0.0) == 0


def test_a_clock_going_back_counts_in_the_newest_slice() -> None:
    """A `now` before the newest slice seen records into the newest slice."""
    rec = LatencyRecorder(slice_seconds=1.0, slices=2)
    rec.record(0.1, now=5.5)
    rec.record(0.2, now=1.0)
    assert rec.series(now=5.5, q=1.0) == [None, 0.2]
    assert rec.count(now=5.5) == 2


def test_recording_allocates_nothing_that_stays() -> None:
    """Ten thousand more records leave memory as it was (fixed-size histograms)."""
    rec = LatencyRecorder()
    values = [0.001 * (1 + n % 500) for n in range(10_000)]
    for _ in range(30):  # every count in use is past the cached small ints (256)
        for value in values:
            rec.record(value, now=0.5)
    tracemalloc.start()
    try:
        for value in values:  # each count is now an int that tracemalloc traces
            rec.record(value, now=0.5)
        before = tracemalloc.get_traced_memory()[0]
        for value in values:
            rec.record(value, now=0.5)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 256  # any retained per-record object would be >= 160 kB


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"slice_seconds": 0}, "slice_seconds"),
        ({"slices": 0}, "slices"),
        ({"lowest": -1.0}, "lowest"),
        ({"lowest": 1.0, "highest": 1.0}, "highest"),
        ({"buckets_per_octave": True}, "buckets_per_octave"),
    ],
)
def test_bad_settings_raise_config_error(kwargs: dict[str, float], field: str) -> None:
    """A bad setting raises ConfigError naming the argument."""
    with pytest.raises(ConfigError) as info:
        LatencyRecorder(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize("q", [0.0, -0.5, 1.5, math.nan])
def test_quantile_outside_zero_one_is_refused(q: float) -> None:
    """q must be in (0, 1]."""
    with pytest.raises(ValueError, match="must be in"):
        LatencyRecorder().quantile(q, now=0.0)
