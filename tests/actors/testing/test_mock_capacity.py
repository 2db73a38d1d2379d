"""The mock LLM's capacity knob (503 beyond `capacity` + `backlog`) and `cut_after`
(a stream broken after N text deltas), on virtual time in process and on loopback."""

from __future__ import annotations

import functools
import json
from typing import Any

import anyio
import anyio.lowlevel
import httpx2
import pytest

from actors.testing import Behaviour, MockLLM, serve_mock_llm

pytestmark = pytest.mark.anyio

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
OPENAI: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC: dict[str, Any] = {**OPENAI, "max_tokens": 64}


def in_process(mock: MockLLM) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=mock), base_url="http://mock")


async def timed_posts(mock: MockLLM, count: int) -> list[tuple[float, int]]:
    """Sends `count` concurrent chat requests; returns (finish time, status) in order sent."""
    results: list[tuple[float, int]] = [(0.0, 0)] * count
    start = anyio.current_time()

    async def post(index: int) -> None:
        async with in_process(mock) as http:
            response = await http.post(CHAT, json=OPENAI)
        results[index] = (anyio.current_time() - start, response.status_code)

    async with anyio.create_task_group() as tg:
        for index in range(count):
            tg.start_soon(post, index)
            await anyio.lowlevel.checkpoint()  # arrival order is send order
    return results


@pytest.mark.virtual_time
async def test_requests_beyond_capacity_and_backlog_get_503_at_once() -> None:
    """With one place and no backlog, a second concurrent request is refused with 503."""
    mock = MockLLM(latency=1.0, capacity=1)
    results = await timed_posts(mock, 2)
    assert results == [(1.0, 200), (0.0, 503)]
    assert mock.over_capacity == 1
    assert mock.busy == 0


@pytest.mark.virtual_time
async def test_backlogged_requests_wait_their_turn() -> None:
    """Requests in the backlog are answered in arrival order as places free up."""
    mock = MockLLM(latency=1.0, capacity=1, backlog=2)
    results = await timed_posts(mock, 4)
    assert results == [(1.0, 200), (2.0, 200), (3.0, 200), (0.0, 503)]


@pytest.mark.virtual_time
async def test_lowered_capacity_applies_as_places_free_up() -> None:
    """Halving the capacity mid-run serves the backlog one at a time from then on."""
    mock = MockLLM(latency=1.0, capacity=2, backlog=4)
    results: list[tuple[float, int]] = []

    async def lower() -> None:
        await anyio.sleep(0.5)
        mock.control({"capacity": 1})

    async with anyio.create_task_group() as tg:
        tg.start_soon(lower)
        results = await timed_posts(mock, 4)
    assert sorted(results) == [(1.0, 200), (1.0, 200), (2.0, 200), (3.0, 200)]


@pytest.mark.virtual_time
async def test_a_cancelled_backlogged_request_leaves_the_backlog() -> None:
    """A client giving up while backlogged frees its backlog place."""
    mock = MockLLM(latency=1.0, capacity=1, backlog=1)
    async with anyio.create_task_group() as tg, in_process(mock) as http:
        tg.start_soon(functools.partial(http.post, CHAT, json=OPENAI))
        await anyio.sleep(0.1)
        with anyio.move_on_after(0.2):
            await http.post(CHAT, json=OPENAI)
        await anyio.lowlevel.checkpoint()
        response = await http.post(CHAT, json=OPENAI)  # waits behind the first only
    assert response.status_code == 200
    assert anyio.current_time() == pytest.approx(2.0)


async def test_control_sets_capacity_and_rejects_bad_values() -> None:
    """POST /_control sets capacity and backlog; a negative one is a 400."""
    mock = MockLLM()
    async with in_process(mock) as http:
        ok = await http.post("/_control", json={"capacity": 3, "backlog": 5})
        bad = await http.post("/_control", json={"backlog": -1})
    assert ok.status_code == 200
    assert ok.json()["busy"] == 0
    assert (mock.capacity, mock.backlog) == (3, 5)
    assert bad.status_code == 400


def _deltas(lines: list[str], wire: str) -> list[str]:
    texts = []
    for line in lines:
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        if wire == "anthropic":
            delta = event.get("delta") or {}
            if event.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
                texts.append(delta["text"])
        elif event.get("choices") and event["choices"][0]["delta"].get("content"):
            texts.append(event["choices"][0]["delta"]["content"])
    return texts


@pytest.mark.parametrize(
    ("path", "body", "wire"), [(CHAT, OPENAI, "openai"), (MESSAGES, ANTHROPIC, "anthropic")]
)
async def test_stream_error_comes_after_cut_after_deltas(
    path: str, body: dict[str, Any], wire: str
) -> None:
    """A stream_error with cut_after=2 sends two text deltas, then the error event."""
    mock = MockLLM()
    mock.script(Behaviour.stream_error(content="one two three four five", cut_after=2))
    async with in_process(mock) as http:
        response = await http.post(path, json={**body, "stream": True})
    lines = response.text.splitlines()
    assert _deltas(lines, wire) == ["one", " two"]
    assert "overloaded" in lines[-1].lower() or "Overloaded" in response.text


async def test_truncated_stream_drops_after_cut_after_deltas() -> None:
    """A truncated stream with cut_after=3 sends three deltas, then the connection drops."""
    async with serve_mock_llm() as (url, mock), httpx2.AsyncClient(base_url=url) as http:
        mock.script(Behaviour.truncated(content="a b c d e f", cut_after=3))
        lines: list[str] = []
        with pytest.raises(httpx2.RemoteProtocolError):
            async with http.stream("POST", CHAT, json={**OPENAI, "stream": True}) as response:
                async for line in response.aiter_lines():
                    lines.append(line)  # noqa: PERF401 - the lines read before the drop
    assert _deltas(lines, "openai") == ["a", " b", " c"]


def test_cut_after_must_be_a_count() -> None:
    """A negative cut_after is refused."""
    with pytest.raises(ValueError, match="cut_after"):
        Behaviour.truncated(cut_after=-1)
