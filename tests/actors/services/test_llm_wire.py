"""The LLM wire parsers against hostile answers: only documented errors ever leave them
(`MalformedResponse`, `ServiceResponseError`, with the service name and correlation id),
usage is checked and bounded, and SSE framing is read whatever the chunking."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import InvalidRequest, MalformedResponse, ServiceResponseError
from actors.services import _anthropic_wire, _openai_wire
from actors.services._wire import SSEDecoder, SSEEvent, UsageBound, Wire, WireLimits, load_json
from actors.testing import capture_events

from .llm_strategies import (
    anthropic_events,
    anthropic_messages,
    json_values,
    mutated_streams,
    openai_chunks,
    openai_completions,
    sse_streams,
)

WIRE = Wire(service="llm", correlation_id="cid-1", bound=UsageBound(prompt=1000, completion=100))
DOCUMENTED = (MalformedResponse, ServiceResponseError)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def only_documented(parse: Callable[[], object]) -> None:
    """Runs `parse`; any error must be documented and carry the service and the id."""
    try:
        parse()
    except DOCUMENTED as exc:
        error = exc
    else:
        return
    assert (error.service, error.correlation_id) == ("llm", "cid-1")


def encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


# --------------------------------------------------------------------------- properties


@PROPERTY
@given(st.one_of(openai_completions, json_values))
def test_openai_json_parser_raises_only_documented_errors(value: Any) -> None:
    """Any JSON body gives a ChatResponse, MalformedResponse or ServiceResponseError."""
    only_documented(lambda: _openai_wire.parse_completion(WIRE, encode(value), {}, model="m"))


@PROPERTY
@given(st.one_of(anthropic_messages, json_values))
def test_anthropic_json_parser_raises_only_documented_errors(value: Any) -> None:
    """Any JSON body gives a ChatResponse, MalformedResponse or ServiceResponseError."""
    only_documented(lambda: _anthropic_wire.parse_message(WIRE, encode(value), {}, model="m"))


@PROPERTY
@given(st.integers(min_value=400, max_value=599), st.one_of(st.binary(max_size=40), json_values))
def test_error_parsers_always_give_the_status(status: int, body: Any) -> None:
    """Any error body gives a ServiceResponseError with the status, on both wires."""
    raw = body if isinstance(body, bytes) else encode(body)
    for parse in (_openai_wire.parse_error, _anthropic_wire.parse_error):
        error = parse(WIRE, status, {}, raw)
        assert isinstance(error, ServiceResponseError)
        assert error.status_code == status
        assert error.correlation_id == "cid-1"


def run_stream(assembler: Any, chunks: list[bytes]) -> object:
    decoder = SSEDecoder(WIRE)
    for chunk in chunks:
        for event in decoder.feed(chunk):
            assembler.feed(event)
    for event in decoder.end():
        assembler.feed(event)
    return assembler.result({})


@PROPERTY
@given(st.one_of(sse_streams(openai_chunks), mutated_streams("openai")))
def test_openai_stream_parser_raises_only_documented_errors(chunks: list[bytes]) -> None:
    """Any SSE stream, cut anywhere, gives an answer or a documented error."""
    only_documented(lambda: run_stream(_openai_wire.StreamAssembler(WIRE, model="m"), chunks))


@PROPERTY
@given(st.one_of(sse_streams(anthropic_events), mutated_streams("anthropic")))
def test_anthropic_stream_parser_raises_only_documented_errors(chunks: list[bytes]) -> None:
    """Any SSE stream, cut anywhere, gives an answer or a documented error."""
    only_documented(lambda: run_stream(_anthropic_wire.StreamAssembler(WIRE, model="m"), chunks))


@PROPERTY
@given(
    st.lists(st.tuples(st.sampled_from(["", "message_start"]), st.text(max_size=30)), max_size=6),
    st.data(),
)
def test_sse_decoder_reads_events_whatever_the_chunking(
    events: list[tuple[str, str]], data: st.DataObject
) -> None:
    """Events written with any line ending and cut into any chunks decode unchanged."""
    newline = data.draw(st.sampled_from(["\n", "\r\n", "\r"]))
    body = ""
    expected = []
    for name, payload in events:
        lines = payload.splitlines() or [""]
        body += (f"event: {name}{newline}" if name else "") + ": a comment" + newline
        body += "".join(f"data: {line}{newline}" for line in lines) + newline
        expected.append(SSEEvent(name or "message", "\n".join(lines)))
    raw = body.encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    decoder = SSEDecoder(WIRE)
    seen: list[SSEEvent] = []
    start = 0
    for cut in [*cuts, len(raw)]:
        seen += decoder.feed(raw[start:cut])
        start = cut
    seen += decoder.end()
    assert seen == expected


# --------------------------------------------------------------------------- the issue's cases


@pytest.mark.parametrize(
    "parse",
    [
        lambda raw: _openai_wire.parse_completion(WIRE, raw, {}, model="m"),
        lambda raw: _anthropic_wire.parse_message(WIRE, raw, {}, model="m"),
    ],
    ids=["openai", "anthropic"],
)
def test_deeply_nested_body_is_malformed_not_recursion(parse: Callable[[bytes], object]) -> None:
    """A 200 body of 200,000 '[' is MalformedResponse, never RecursionError."""
    with pytest.raises(MalformedResponse, match=r"not JSON|nested"):
        parse(b"[" * 200_000)


def test_nesting_beyond_the_depth_bound_is_refused() -> None:
    """Valid JSON nested deeper than max_depth is refused (it would crash later readers)."""
    raw = b"[" * 100 + b"]" * 100
    with pytest.raises(MalformedResponse, match="deeper than 64"):
        load_json(WIRE, raw, "the answer")


def test_oversized_body_is_refused() -> None:
    """A body over max_body_bytes is refused before parsing."""
    wire = Wire(service="llm", limits=WireLimits(max_body_bytes=10))
    with pytest.raises(MalformedResponse, match="larger than 10 bytes"):
        load_json(wire, b'{"a": "0123456789"}', "the answer")


def test_deeply_nested_error_body_keeps_the_status() -> None:
    """A 500 body of 200,000 '[' still gives ServiceResponseError 500."""
    error = _openai_wire.parse_error(WIRE, 500, {}, b"[" * 200_000)
    assert error.status_code == 500
    assert error.code is None


def openai_stream(*datas: str) -> list[bytes]:
    return [b"".join(f"data: {d}\n\n".encode() for d in datas)]


@pytest.mark.parametrize(
    "data",
    ['{"choices":[1]}', '{"choices":[{"delta":"x"}]}', '{"choices":"abc"}', "[" * 200_000],
)
def test_misshapen_stream_events_are_malformed(data: str) -> None:
    """SSE events of the wrong shape are MalformedResponse, never AttributeError."""
    with pytest.raises(MalformedResponse):
        run_stream(_openai_wire.StreamAssembler(WIRE, model="m"), openai_stream(data, "[DONE]"))


def completion_with_usage(usage: dict[str, Any]) -> bytes:
    message = {"role": "assistant", "content": "hi"}
    return encode({"choices": [{"message": message}], "usage": usage})


@pytest.mark.parametrize("bad", [1e999, -50, "abc", True, 1.5])
def test_invalid_usage_is_treated_as_absent_with_an_event(bad: object) -> None:
    """A usage count that is not a whole number >= 0 is dropped and reported."""
    with capture_events() as events:
        reply = _openai_wire.parse_completion(
            WIRE,
            completion_with_usage({"prompt_tokens": bad, "completion_tokens": 3}),
            {},
            model="m",
        )
    assert reply.usage.prompt_tokens == 0
    assert reply.usage.completion_tokens == 3
    assert [e["field"] for e in events if e["event"] == "llm.usage_invalid"] == ["prompt_tokens"]


def test_usage_beyond_the_request_bound_is_clamped_with_an_event() -> None:
    """total_tokens = 10**12 is clamped to the request's own bound, never charged."""
    with capture_events() as events:
        reply = _openai_wire.parse_completion(
            WIRE,
            completion_with_usage({"prompt_tokens": 10, "total_tokens": 10**12}),
            {},
            model="m",
        )
    assert reply.usage.total_tokens == WIRE.bound.total
    clamped = [e for e in events if e["event"] == "llm.usage_clamped"]
    assert [(e["field"], e["bound"]) for e in clamped] == [("total_tokens", 1100)]


def test_anthropic_usage_counts_cache_reads_and_writes() -> None:
    """Anthropic's prompt is input + cache writes + cache reads, each kept apart too."""
    usage = {
        "input_tokens": 5,
        "cache_creation_input_tokens": 7,
        "cache_read_input_tokens": 11,
        "output_tokens": 13,
    }
    parsed = _anthropic_wire.parse_usage(WIRE, usage)
    assert (parsed.prompt_tokens, parsed.cached_tokens, parsed.cache_creation_tokens) == (23, 11, 7)
    assert (parsed.completion_tokens, parsed.total_tokens) == (13, 36)


def test_openai_usage_reads_cached_and_reasoning_tokens() -> None:
    """prompt_tokens_details.cached_tokens and completion_tokens_details.reasoning_tokens."""
    usage = {
        "prompt_tokens": 20,
        "completion_tokens": 30,
        "total_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 12},
    }
    parsed = _openai_wire.parse_usage(WIRE, usage)
    assert (parsed.cached_tokens, parsed.reasoning_tokens, parsed.total_tokens) == (8, 12, 50)


# --------------------------------------------------------------------------- assembling


def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_openai_tool_call_fragments_are_joined_by_index() -> None:
    """Interleaved argument fragments of two calls are joined per index, in order."""
    datas = [
        chunk(
            {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}}]}
        ),
        chunk(
            {"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": '{"y'}}]}
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x": '}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": '": 2}'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}, "tool_calls"),
        "[DONE]",
    ]
    reply = run_stream(_openai_wire.StreamAssembler(WIRE, model="m"), openai_stream(*datas))
    assert [(c.id, c.name, c.parsed_arguments()) for c in reply.tool_calls] == [  # type: ignore[attr-defined]
        ("a", "f", {"x": 1}),
        ("b", "g", {"y": 2}),
    ]
    assert reply.finish_reason == "tool_calls"  # type: ignore[attr-defined]


def test_openai_stream_without_done_is_malformed() -> None:
    """A stream cut before [DONE] is MalformedResponse."""
    with pytest.raises(MalformedResponse, match="DONE"):
        run_stream(
            _openai_wire.StreamAssembler(WIRE, model="m"), openai_stream(chunk({"content": "a"}))
        )


def test_openai_error_event_mid_stream_is_a_service_error() -> None:
    """A {"error": ...} event in a stream raises ServiceResponseError with its code."""
    error = json.dumps({"error": {"message": "boom", "type": "server_error", "code": 503}})
    with pytest.raises(ServiceResponseError) as info:
        run_stream(_openai_wire.StreamAssembler(WIRE, model="m"), openai_stream(error))
    assert info.value.status_code == 503


def test_a_raising_on_chunk_fails_the_caller_not_the_parser() -> None:
    """An on_chunk callback that raises gives InvalidRequest (the caller's code failed)."""

    def explode(_text: str) -> None:
        raise RuntimeError("user bug")

    assembler = _openai_wire.StreamAssembler(WIRE, model="m", on_chunk=explode)
    with pytest.raises(InvalidRequest, match="on_chunk"):
        run_stream(assembler, openai_stream(chunk({"content": "a"}), "[DONE]"))


def anthropic_stream(*events: dict[str, Any]) -> list[bytes]:
    return [b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)]


START = {
    "type": "message_start",
    "message": {"id": "m1", "model": "claude", "usage": {"input_tokens": 9, "output_tokens": 1}},
}


def test_anthropic_stream_assembles_text_and_tool_use() -> None:
    """Text deltas and input_json_delta fragments become the content and a tool call."""
    events: list[dict[str, Any]] = [
        START,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Let me"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": " check"},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t1", "name": "weather", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"city"'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ': "Paris"}'},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 20},
        },
        {"type": "message_stop"},
    ]
    reply: Any = run_stream(
        _anthropic_wire.StreamAssembler(WIRE, model="m"), anthropic_stream(*events)
    )
    assert reply.content == "Let me check"
    assert [(c.id, c.name, c.parsed_arguments()) for c in reply.tool_calls] == [
        ("t1", "weather", {"city": "Paris"})
    ]
    assert reply.message["content"][1]["input"] == {"city": "Paris"}
    assert (reply.finish_reason, reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        "tool_use",
        9,
        20,
    )


def test_anthropic_error_event_mid_stream_is_a_529() -> None:
    """An overloaded_error event mid-stream raises ServiceResponseError 529."""
    events = [
        START,
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]
    with pytest.raises(ServiceResponseError) as info:
        run_stream(_anthropic_wire.StreamAssembler(WIRE, model="m"), anthropic_stream(*events))
    assert (info.value.status_code, info.value.code) == (529, "overloaded_error")


def test_anthropic_stream_without_message_stop_is_malformed() -> None:
    """A stream that ends before message_stop is MalformedResponse."""
    with pytest.raises(MalformedResponse, match="message_stop"):
        run_stream(_anthropic_wire.StreamAssembler(WIRE, model="m"), anthropic_stream(START))


def test_oversized_sse_event_is_refused() -> None:
    """An event over max_event_bytes is refused, even without a line ending."""
    wire = Wire(service="llm", limits=WireLimits(max_event_bytes=100))
    with pytest.raises(MalformedResponse, match="larger than 100"):
        SSEDecoder(wire).feed(b"data: " + b"x" * 200)
