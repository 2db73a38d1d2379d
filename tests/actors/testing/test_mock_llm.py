"""The mock OpenAI-compatible server: real HTTP on loopback, programmable misbehaviour."""

from __future__ import annotations

import functools
import json
from typing import Any

import anyio
import attrs
import httpx2
import pytest

from actors.testing import Behaviour, MockLLM, Quota, ToolRule, serve_mock_llm

pytestmark = pytest.mark.anyio

CHAT = "/v1/chat/completions"
REQUEST: dict[str, Any] = {
    "model": "mock-gpt",
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
}


def client(url: str, timeout: float = 5.0) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(base_url=url, timeout=timeout)


def in_process(mock: MockLLM) -> httpx2.AsyncClient:
    """A client calling the app directly (no socket): usable on virtual time."""
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=mock), base_url="http://mock")


async def stream_lines_until(http: httpx2.AsyncClient, error: type[Exception]) -> list[str]:
    """Streams a chat answer until it fails with `error`; returns the lines read before."""
    lines: list[str] = []
    with pytest.raises(error):
        async with http.stream("POST", CHAT, json={**REQUEST, "stream": True}) as response:
            async for line in response.aiter_lines():
                lines.append(line)  # noqa: PERF401 - keep the lines read before the failure
    return lines


async def test_chat_completion_has_content_and_usage() -> None:
    """A chat request gets an OpenAI-shaped completion with token usage."""
    async with serve_mock_llm() as (url, mock), client(url) as http:
        mock.default = Behaviour.ok("hello there", prompt_tokens=7, completion_tokens=2)
        response = await http.post(CHAT, json=REQUEST)
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "hello there"}
    usage = data["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (7, 2, 9)
    assert mock.last_request == REQUEST


async def test_default_reply_echoes_last_user_message() -> None:
    """Without scripted content the reply echoes the user and estimates usage."""
    async with serve_mock_llm() as (url, _mock), client(url) as http:
        data = (await http.post(CHAT, json=REQUEST)).json()
    assert data["choices"][0]["message"]["content"] == "echo: hi"
    assert data["usage"]["prompt_tokens"] == 2  # 10 characters / 4
    assert data["usage"]["completion_tokens"] == 2


async def test_stream_sends_deltas_usage_and_done() -> None:
    """stream: true answers with SSE deltas, a usage chunk, then [DONE]."""
    async with serve_mock_llm() as (url, mock), client(url) as http:
        mock.default = Behaviour.ok("one two three", completion_tokens=3)
        async with http.stream("POST", CHAT, json={**REQUEST, "stream": True}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = [line async for line in response.aiter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "one two three"
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert chunks[-1]["choices"] == []


async def test_models_and_health() -> None:
    """GET /v1/models lists the model; GET /health answers ok."""
    async with serve_mock_llm(MockLLM(model="m1")) as (url, mock), client(url) as http:
        models = (await http.get("/v1/models")).json()
        health = await http.get("/health")
        missing = await http.get("/nope")
    assert [m["id"] for m in models["data"]] == ["m1"]
    assert health.json() == {"status": "ok"}
    assert missing.status_code == 404
    assert mock.by_path["/health"] == 1


async def test_scripted_sequence_then_default() -> None:
    """Scripted behaviours serve the next requests in order, then the default resumes."""
    async with serve_mock_llm() as (url, mock), client(url) as http:
        mock.script(Behaviour.rate_limited(retry_after=2, repeat=2), Behaviour.error(503))
        statuses = [(await http.post(CHAT, json=REQUEST)).status_code for _ in range(4)]
    assert statuses == [429, 429, 503, 200]
    assert mock.chat_requests == 4
    assert mock.by_kind == {"status": 3, "ok": 1}


async def test_rate_limited_headers_and_body() -> None:
    """A 429 carries retry-after, retry-after-ms, x-ratelimit-* and rate_limit_exceeded."""
    async with serve_mock_llm() as (url, mock), client(url) as http:
        mock.script(Behaviour.rate_limited(retry_after=1.5, retry_after_ms=1500))
        response = await http.post(CHAT, json=REQUEST)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1.5"
    assert response.headers["retry-after-ms"] == "1500"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["x-ratelimit-reset-tokens"] == "1s"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


async def test_quota_exceeded_body() -> None:
    """The insufficient_quota variant of 429 says so in its body."""
    async with serve_mock_llm() as (url, mock), client(url) as http:
        mock.script(Behaviour.quota_exceeded())
        response = await http.post(CHAT, json=REQUEST)
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "insufficient_quota"
    assert "retry-after" not in response.headers


@pytest.mark.parametrize("status", [500, 503, 529])
async def test_server_errors(status: int) -> None:
    """5xx and 529 answers carry an OpenAI-style error body."""
    async with serve_mock_llm() as (url, mock), client(url) as http:
        mock.script(Behaviour.overloaded() if status == 529 else Behaviour.error(status))
        response = await http.post(CHAT, json=REQUEST)
    assert response.status_code == status
    assert "error" in response.json()


async def test_malformed_and_truncated_bodies() -> None:
    """Malformed and truncated answers are 200s whose body is not valid JSON."""
    async with serve_mock_llm() as (url, mock), client(url) as http:
        mock.script(Behaviour.malformed(), Behaviour.truncated())
        for _ in range(2):
            response = await http.post(CHAT, json=REQUEST)
            assert response.status_code == 200
            with pytest.raises(json.JSONDecodeError):
                json.loads(response.content)


async def test_truncated_stream_is_cut_off() -> None:
    """A truncated stream sends some chunks, then the connection drops before [DONE]."""
    async with serve_mock_llm() as (url, mock), client(url) as http:
        mock.script(Behaviour.truncated(content="a b c d e f"))
        lines = await stream_lines_until(http, httpx2.RemoteProtocolError)
    assert any(line.startswith("data: {") for line in lines)
    assert "data: [DONE]" not in lines


async def test_drop_closes_connection() -> None:
    """A dropped request ends in a protocol error at the client, and the server lives on."""
    async with serve_mock_llm() as (url, mock), client(url) as http:
        mock.script(Behaviour.drop())
        with pytest.raises(httpx2.RemoteProtocolError):
            await http.post(CHAT, json=REQUEST)
        assert (await http.post(CHAT, json=REQUEST)).status_code == 200


async def test_hang_never_answers_until_released() -> None:
    """A hanging request times out at the client; leaving the server releases it."""
    async with serve_mock_llm() as (url, mock), client(url, timeout=0.3) as http:
        mock.script(Behaviour.hang())
        start = anyio.current_time()
        with pytest.raises(httpx2.ReadTimeout):
            await http.post(CHAT, json=REQUEST)
        assert anyio.current_time() - start >= 0.3
    assert mock.hanging == 0


async def test_hang_released_when_server_stops() -> None:
    """Stopping the server ends a request that is still hanging."""
    errors: list[BaseException] = []
    async with serve_mock_llm() as (url, mock), client(url, timeout=10) as http:
        mock.script(Behaviour.hang())

        async def caller() -> None:
            try:
                await http.post(CHAT, json=REQUEST)
            except httpx2.HTTPError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            with anyio.fail_after(5):
                while not mock.hanging:  # noqa: ASYNC110 - the server runs in this process
                    await anyio.sleep(0.01)
            mock.release_hangs()
    assert len(errors) == 1
    assert mock.hanging == 0


async def test_a_delayed_answer_ends_when_its_client_goes_away() -> None:
    """A request waiting out its latency ends when its client gives up, so leaving the
    server does not wait out its 1 s graceful timeout (then cancel it) to stop."""
    async with serve_mock_llm(MockLLM(latency=30.0)) as (url, _mock):
        async with client(url, timeout=0.2) as http:
            with pytest.raises(httpx2.ReadTimeout):
                await http.post(CHAT, json=REQUEST)
        leaving = anyio.current_time()
    assert anyio.current_time() - leaving < 0.8


@pytest.mark.virtual_time
async def test_latency_delays_the_answer() -> None:
    """A fixed latency delays each answer by at least that long."""
    async with in_process(MockLLM(latency=0.2)) as http:
        start = anyio.current_time()
        await http.post(CHAT, json=REQUEST)
        assert anyio.current_time() - start >= 0.2


@pytest.mark.virtual_time
async def test_jitter_is_seeded_and_bounded() -> None:
    """Random latency stays within [latency, latency + jitter]."""
    async with in_process(MockLLM(latency=0.05, jitter=0.1, seed=1)) as http:
        for _ in range(3):
            start = anyio.current_time()
            await http.post(CHAT, json=REQUEST)
            elapsed = anyio.current_time() - start
            assert 0.05 <= elapsed < 1.0


async def test_http_control_endpoint_drives_the_script() -> None:
    """POST /_control sets a script and latency; GET /_control returns the counters."""
    async with serve_mock_llm() as (url, mock), client(url) as http:
        command = {
            "script": [
                Behaviour.rate_limited(retry_after=1, repeat=2).to_dict(),
                {"kind": "status", "status": 500},
            ],
            "latency": 0.0,
        }
        reply = await http.post("/_control", json=command)
        assert reply.json()["scripted"] == 3
        statuses = [(await http.post(CHAT, json=REQUEST)).status_code for _ in range(4)]
        counters = (await http.get("/_control")).json()
        bad = await http.post("/_control", json={"bogus": 1})
        await http.post("/_control", json={"reset": True})
    assert statuses == [429, 429, 500, 200]
    assert counters["chat_requests"] == 4
    assert counters["by_kind"] == {"status": 3, "ok": 1}
    assert bad.status_code == 400
    assert mock.chat_requests == 0


async def test_bad_request_body_is_400() -> None:
    """A chat request whose body is not a JSON object gets a 400."""
    async with serve_mock_llm() as (url, _mock), client(url) as http:
        response = await http.post(CHAT, content=b"[1, 2")
    assert response.status_code == 400


def test_behaviour_rejects_unknown_kind_and_fields() -> None:
    """Behaviour validates its kind, and from_dict rejects unknown fields."""
    with pytest.raises(ValueError, match="kind"):
        Behaviour(kind="explode")
    with pytest.raises(ValueError, match="unknown"):
        Behaviour.from_dict({"kind": "ok", "colour": "red"})
    assert Behaviour.from_dict(Behaviour.overloaded().to_dict()) == Behaviour.overloaded()


async def test_binds_loopback_only() -> None:
    """The server listens on 127.0.0.1 and on no other address."""
    async with serve_mock_llm() as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.base_url == f"{server.url}/v1"


async def test_concurrent_requests_are_served_in_parallel() -> None:
    """Twenty requests with 0.3 s latency finish together, not one after another."""
    async with serve_mock_llm(MockLLM(latency=0.3)) as (url, mock), client(url) as http:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(functools.partial(http.post, CHAT, json=REQUEST))
        elapsed = anyio.current_time() - start
    assert mock.chat_requests == 20
    assert 0.3 <= elapsed < 2.0


async def test_stall_sends_headers_then_hangs() -> None:
    """A stalled response has its status line, then no body: a read timeout."""
    async with serve_mock_llm() as (url, mock), client(url, timeout=0.3) as http:
        mock.script(Behaviour.stall())
        async with http.stream("POST", CHAT, json=REQUEST) as response:
            assert response.status_code == 200
            with pytest.raises(httpx2.ReadTimeout):
                await response.aread()


async def test_stalled_stream_sends_some_chunks_then_hangs() -> None:
    """A stalled stream sends part of the deltas, then nothing more."""
    async with serve_mock_llm() as (url, mock), client(url, timeout=0.3) as http:
        mock.script(Behaviour.stall(content="a b c d e f"))
        lines = await stream_lines_until(http, httpx2.ReadTimeout)
    assert any(line.startswith("data: {") for line in lines)
    assert "data: [DONE]" not in lines


async def test_served_log_records_status_and_tokens() -> None:
    """Each answered request is logged with its time, status and token usage."""
    async with serve_mock_llm() as (url, mock), client(url) as http:
        mock.script(Behaviour.ok(prompt_tokens=10, completion_tokens=5), Behaviour.error(500))
        start = anyio.current_time()
        await http.post(CHAT, json=REQUEST)
        await http.post(CHAT, json=REQUEST)
    assert [(s.status, s.total_tokens) for s in mock.served] == [(200, 15), (500, 0)]
    assert all(start <= s.at <= anyio.current_time() for s in mock.served)


async def test_app_works_in_process_without_a_server() -> None:
    """The app also runs in-process through httpx's ASGI transport (no socket)."""
    mock = MockLLM()
    mock.script(Behaviour.rate_limited(retry_after=3))
    async with in_process(mock) as http:
        limited = await http.post(CHAT, json=REQUEST)
        ok = await http.post(CHAT, json=REQUEST)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3"
    assert ok.json()["choices"][0]["message"]["content"] == "echo: hi"


async def test_outage_answers_503_on_every_api_path() -> None:
    """With `down` set, chat, models and health all answer 503; control still works."""
    async with serve_mock_llm() as server, client(server.url) as http:
        server.control.down = True
        for method, path in (
            ("GET", "/v1/models"),
            ("GET", "/health"),
            ("POST", "/v1/chat/completions"),
        ):
            assert (await http.request(method, path, json={})).status_code == 503
        assert (await http.post("/_control", json={"down": False})).status_code == 200
        assert (await http.get("/v1/models")).status_code == 200


# --------------------------------------------------------------------------- Anthropic

MESSAGES = "/v1/messages"
ANTHROPIC_REQUEST: dict[str, Any] = {
    "model": "claude-mock",
    "max_tokens": 50,
    "system": "be brief",
    "messages": [{"role": "user", "content": "hi"}],
}


async def anthropic_events(http: httpx2.AsyncClient, body: dict[str, Any]) -> list[tuple[str, Any]]:
    """Streams an Anthropic answer; returns (event, data) pairs."""
    events: list[tuple[str, Any]] = []
    name = ""
    async with http.stream("POST", MESSAGES, json={**body, "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


async def test_anthropic_message_has_content_blocks_and_usage() -> None:
    """POST /v1/messages answers a Messages body with text blocks and usage."""
    async with in_process(MockLLM()) as http:
        data = (await http.post(MESSAGES, json=ANTHROPIC_REQUEST)).json()
    assert data["type"] == "message"
    assert data["content"] == [{"type": "text", "text": "echo: hi"}]
    assert data["stop_reason"] == "end_turn"
    assert set(data["usage"]) >= {"input_tokens", "output_tokens", "cache_read_input_tokens"}


async def test_anthropic_stream_has_the_event_sequence() -> None:
    """A streamed message runs message_start ... message_stop, text in deltas."""
    mock = MockLLM(default=Behaviour.ok("a b c"))
    async with in_process(mock) as http:
        events = await anthropic_events(http, ANTHROPIC_REQUEST)
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "a b c"


async def test_anthropic_requires_max_tokens() -> None:
    """Like the real API, a Messages request without max_tokens is a 400."""
    body = {key: value for key, value in ANTHROPIC_REQUEST.items() if key != "max_tokens"}
    async with in_process(MockLLM()) as http:
        response = await http.post(MESSAGES, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("behaviour", "status", "kind"),
    [
        (Behaviour.overloaded(), 529, "overloaded_error"),
        (Behaviour.rate_limited(retry_after=3), 429, "rate_limit_error"),
        (Behaviour.error(401), 401, "authentication_error"),
        (Behaviour.error(500), 500, "api_error"),
        (Behaviour.quota_exceeded(), 429, "insufficient_quota"),
    ],
)
async def test_anthropic_error_bodies(behaviour: Behaviour, status: int, kind: str) -> None:
    """Errors on /v1/messages carry Anthropic's error body and the scripted headers."""
    mock = MockLLM()
    mock.script(behaviour)
    async with in_process(mock) as http:
        response = await http.post(MESSAGES, json=ANTHROPIC_REQUEST)
    assert response.status_code == status
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == kind
    if status == 429 and kind == "rate_limit_error":
        assert response.headers["retry-after"] == "3"


@pytest.mark.parametrize(("path", "body"), [(CHAT, REQUEST), (MESSAGES, ANTHROPIC_REQUEST)])
async def test_stream_error_sends_half_a_stream_then_an_error_event(
    path: str, body: dict[str, Any]
) -> None:
    """stream_error cuts a stream with an error event (Anthropic: event: error)."""
    mock = MockLLM()
    mock.script(Behaviour.stream_error())
    async with in_process(mock) as http:
        async with http.stream("POST", path, json={**body, "stream": True}) as response:
            lines = [line async for line in response.aiter_lines() if line]
    last = json.loads(lines[-1].removeprefix("data: "))
    assert response.status_code == 200
    if path == MESSAGES:
        assert lines[-2] == "event: error"
        assert last["error"]["type"] == "overloaded_error"
    else:
        assert last["error"]["type"] == "overloaded_error"
        assert "data: [DONE]" not in lines


async def test_anthropic_faults_drop_and_hang_on_the_real_server() -> None:
    """A drop closes the connection; a hang times out, on /v1/messages too."""
    async with serve_mock_llm() as (url, mock), client(url, timeout=0.3) as http:
        mock.script(Behaviour.drop(), Behaviour.hang())
        with pytest.raises(httpx2.RemoteProtocolError):
            await http.post(MESSAGES, json=ANTHROPIC_REQUEST)
        with pytest.raises(httpx2.ReadTimeout):
            await http.post(MESSAGES, json=ANTHROPIC_REQUEST)
        assert (await http.post(MESSAGES, json=ANTHROPIC_REQUEST)).status_code == 200


# --------------------------------------------------------------------------- tool calling

OPENAI_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "input_schema": {"type": "object"}}]
RULE = ToolRule(when="weather", tool="get_weather", arguments={"city": "Paris"})


async def test_tool_rule_answers_with_a_tool_call_then_uses_the_result() -> None:
    """OpenAI: a matching prompt gets tool_calls; the tool message gets a final answer."""
    mock = MockLLM(tools=[RULE])
    ask = {
        "model": "m",
        "tools": OPENAI_TOOLS,
        "messages": [{"role": "user", "content": "weather?"}],
    }
    async with in_process(mock) as http:
        first = (await http.post(CHAT, json=ask)).json()["choices"][0]
        (call,) = first["message"]["tool_calls"]
        messages = [
            *ask["messages"],
            first["message"],
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
        ]
        final = (await http.post(CHAT, json={**ask, "messages": messages})).json()["choices"][0]
    assert first["finish_reason"] == "tool_calls"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert final["message"]["content"] == "get_weather returned: sunny"


async def test_tool_rule_on_the_anthropic_wire() -> None:
    """Anthropic: tool_use blocks, then a final answer quoting the tool_result."""
    mock = MockLLM(tools=[RULE])
    ask = {**ANTHROPIC_REQUEST, "tools": ANTHROPIC_TOOLS}
    ask["messages"] = [{"role": "user", "content": "the weather please"}]
    async with in_process(mock) as http:
        first = (await http.post(MESSAGES, json=ask)).json()
        (block,) = first["content"]
        result = {"type": "tool_result", "tool_use_id": block["id"], "content": "rain"}
        messages = [
            *ask["messages"],
            {"role": "assistant", "content": first["content"]},
            {"role": "user", "content": [result]},
        ]
        final = (await http.post(MESSAGES, json={**ask, "messages": messages})).json()
    assert (first["stop_reason"], block["type"], block["input"]) == (
        "tool_use",
        "tool_use",
        {"city": "Paris"},
    )
    assert final["content"][0]["text"] == "get_weather returned: rain"


async def test_tool_rule_needs_the_tool_offered() -> None:
    """A prompt that matches but offers no such tool gets the usual echo."""
    mock = MockLLM(tools=[RULE])
    async with in_process(mock) as http:
        answer = (
            await http.post(
                CHAT, json={**REQUEST, "messages": [{"role": "user", "content": "weather"}]}
            )
        ).json()
    assert answer["choices"][0]["message"]["content"] == "echo: weather"


async def test_streamed_tool_call_arguments_come_in_fragments() -> None:
    """A streamed tool call sends its arguments in several fragments of one index."""
    mock = MockLLM(tools=[RULE])
    ask = {"model": "m", "tools": OPENAI_TOOLS, "stream": True}
    ask["messages"] = [{"role": "user", "content": "weather"}]
    async with in_process(mock) as http:
        async with http.stream("POST", CHAT, json=ask) as response:
            lines = [line async for line in response.aiter_lines() if line.startswith("data: {")]
    fragments = [
        call["function"].get("arguments", "")
        for line in lines
        for choice in json.loads(line.removeprefix("data: "))["choices"]
        for call in choice["delta"].get("tool_calls", [])
    ]
    assert len([f for f in fragments if f]) > 1
    assert json.loads("".join(fragments)) == {"city": "Paris"}


# --------------------------------------------------------------------------- quotas


def keyed(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.mark.virtual_time
async def test_quota_refuses_requests_over_the_limit_per_key() -> None:
    """Beyond requests_per_minute a key gets 429 with retry-after; other keys do not."""
    mock = MockLLM(quota=Quota(requests_per_minute=2))
    async with in_process(mock) as http:
        statuses = [
            (await http.post(CHAT, json=REQUEST, headers=keyed("a"))).status_code for _ in range(3)
        ]
        limited = await http.post(CHAT, json=REQUEST, headers=keyed("a"))
        other = await http.post(CHAT, json=REQUEST, headers=keyed("b"))
    assert statuses == [200, 200, 429]
    assert limited.headers["retry-after"] == "60"
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert other.status_code == 200


@pytest.mark.virtual_time
async def test_quota_window_rolls() -> None:
    """A refused request fits again when the oldest one leaves the window, not before."""
    mock = MockLLM(quota=Quota(requests_per_minute=1, window=10.0))
    async with in_process(mock) as http:
        assert (await http.post(CHAT, json=REQUEST)).status_code == 200
        await anyio.sleep(4)
        refused = await http.post(CHAT, json=REQUEST)
        assert refused.status_code == 429
        assert refused.headers["retry-after-ms"] == "6000"
        await anyio.sleep(5.99)
        assert (await http.post(CHAT, json=REQUEST)).status_code == 429
        await anyio.sleep(0.01)
        assert (await http.post(CHAT, json=REQUEST)).status_code == 200


@pytest.mark.virtual_time
async def test_quota_counts_tokens() -> None:
    """tokens_per_minute counts each answer's prompt plus completion tokens."""
    mock = MockLLM(
        quota=Quota(tokens_per_minute=25),
        default=Behaviour.ok(prompt_tokens=7, completion_tokens=3),
    )
    async with in_process(mock) as http:
        first = await http.post(CHAT, json=REQUEST)
        second = await http.post(CHAT, json=REQUEST)
        third = await http.post(CHAT, json=REQUEST)
    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 429]
    assert first.headers["x-ratelimit-remaining-tokens"] == "15"
    assert second.headers["x-ratelimit-remaining-tokens"] == "5"
    assert sum(s.total_tokens for s in mock.served) == 20


@pytest.mark.virtual_time
async def test_quota_refuses_a_request_larger_than_the_limit_for_good() -> None:
    """A request that can never fit is refused without a retry-after."""
    mock = MockLLM(quota=Quota(tokens_per_minute=5), default=Behaviour.ok(prompt_tokens=10))
    async with in_process(mock) as http:
        response = await http.post(CHAT, json=REQUEST)
    assert response.status_code == 429
    assert "retry-after" not in response.headers


@pytest.mark.virtual_time
async def test_quota_headers_on_the_anthropic_wire() -> None:
    """Anthropic answers carry anthropic-ratelimit-* with RFC 3339 resets and a date."""
    mock = MockLLM(quota=Quota(requests_per_minute=3, tokens_per_minute=1000))
    async with in_process(mock) as http:
        response = await http.post(MESSAGES, json=ANTHROPIC_REQUEST, headers={"x-api-key": "k"})
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "2"
    assert response.headers["anthropic-ratelimit-tokens-limit"] == "1000"
    assert response.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert "date" in response.headers


async def test_unknown_api_key_is_refused() -> None:
    """With api_keys set, another key gets 401 invalid_api_key with the key masked."""
    mock = MockLLM(api_keys=frozenset({"sk-right-000000000000"}))
    async with in_process(mock) as http:
        wrong = await http.post(CHAT, json=REQUEST, headers=keyed("sk-wrong-111111111111"))
        right = await http.post(CHAT, json=REQUEST, headers=keyed("sk-right-000000000000"))
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert "sk-wrong-111111111111" not in wrong.text
    assert right.status_code == 200


async def test_control_endpoint_sets_tools_and_quota() -> None:
    """POST /_control accepts tool rules and a quota (and null to remove it)."""
    mock = MockLLM()
    async with in_process(mock) as http:
        command = {"tools": [attrs.asdict(RULE)], "quota": {"requests_per_minute": 5}}
        assert (await http.post("/_control", json=command)).status_code == 200
        assert mock.tools == [RULE]
        assert mock.quota == Quota(requests_per_minute=5)
        assert (await http.post("/_control", json={"quota": None})).status_code == 200
        bad = await http.post("/_control", json={"tools": [{"when": "x", "colour": 1}]})
    assert mock.quota is None
    assert bad.status_code == 400


async def test_models_endpoint_can_be_missing() -> None:
    """models_endpoint=False answers 404 on /v1/models, like servers that lack it."""
    async with in_process(MockLLM(models_endpoint=False)) as http:
        assert (await http.get("/v1/models")).status_code == 404
