"""Hypothesis strategies for hostile provider answers: arbitrary JSON, answer-shaped
JSON with wrong types in every field, and arbitrary SSE framing of event streams."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import strategies as st

from actors.testing._mock_wire import Reply, sse
from actors.testing._mock_wire import anthropic_events as anthropic_events_of
from actors.testing._mock_wire import openai_chunks as openai_chunks_of

# Scalars a hostile provider sends where numbers, strings or objects belong.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)

# Any JSON-ish value, a few levels deep.
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=12), children, max_size=4),
    ),
    max_leaves=20,
)


def _field(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field that is usually well-formed (4 in 5), sometimes anything at all."""
    return st.one_of(good, good, good, good, json_values)


_counts = _field(
    st.one_of(
        st.integers(min_value=0, max_value=10**6),
        st.sampled_from([1e999, -50, "abc", 10**12, 2**64, 12.0, True]),
    )
)

openai_usage = st.fixed_dictionaries(
    {},
    optional={
        "prompt_tokens": _counts,
        "completion_tokens": _counts,
        "total_tokens": _counts,
        "prompt_tokens_details": _field(st.fixed_dictionaries({"cached_tokens": _counts})),
        "completion_tokens_details": _field(st.fixed_dictionaries({"reasoning_tokens": _counts})),
    },
)

_tool_call = st.fixed_dictionaries(
    {},
    optional={
        "index": _field(st.integers(min_value=0, max_value=3)),
        "id": _field(st.text(max_size=8)),
        "type": _field(st.just("function")),
        "function": _field(
            st.fixed_dictionaries(
                {},
                optional={
                    "name": _field(st.text(max_size=8)),
                    "arguments": _field(st.text(max_size=12)),
                },
            )
        ),
    },
)

_openai_message = st.fixed_dictionaries(
    {},
    optional={
        "role": _field(st.just("assistant")),
        "content": _field(st.one_of(st.none(), st.text(max_size=20))),
        "tool_calls": _field(st.lists(_tool_call, max_size=3)),
    },
)

openai_completions = st.fixed_dictionaries(
    {},
    optional={
        "id": _field(st.text(max_size=8)),
        "model": _field(st.text(max_size=8)),
        "choices": _field(
            st.lists(
                _field(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "index": _field(st.just(0)),
                            "message": _field(_openai_message),
                            "finish_reason": _field(st.sampled_from(["stop", "tool_calls"])),
                        },
                    )
                ),
                max_size=3,
            )
        ),
        "usage": _field(openai_usage),
        "error": _field(st.fixed_dictionaries({"message": _field(st.text(max_size=10))})),
    },
)

openai_chunks = st.fixed_dictionaries(
    {},
    optional={
        "model": _field(st.text(max_size=8)),
        "choices": _field(
            st.lists(
                _field(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "index": _field(st.integers(min_value=0, max_value=2)),
                            "delta": _field(_openai_message),
                            "finish_reason": _field(st.sampled_from(["stop", "tool_calls"])),
                        },
                    )
                ),
                max_size=2,
            )
        ),
        "usage": _field(openai_usage),
    },
)

anthropic_usage = st.fixed_dictionaries(
    {},
    optional={
        "input_tokens": _counts,
        "output_tokens": _counts,
        "cache_creation_input_tokens": _counts,
        "cache_read_input_tokens": _counts,
    },
)

_block = st.fixed_dictionaries(
    {},
    optional={
        "type": _field(st.sampled_from(["text", "tool_use", "thinking"])),
        "text": _field(st.text(max_size=10)),
        "id": _field(st.text(max_size=6)),
        "name": _field(st.text(max_size=6)),
        "input": _field(st.dictionaries(st.text(max_size=4), scalars, max_size=2)),
    },
)

anthropic_messages = st.fixed_dictionaries(
    {},
    optional={
        "type": _field(st.sampled_from(["message", "error"])),
        "id": _field(st.text(max_size=8)),
        "model": _field(st.text(max_size=8)),
        "content": _field(st.lists(_field(_block), max_size=3)),
        "stop_reason": _field(st.sampled_from(["end_turn", "tool_use"])),
        "usage": _field(anthropic_usage),
        "error": _field(st.fixed_dictionaries({"type": _field(st.text(max_size=10))})),
    },
)

_delta = st.fixed_dictionaries(
    {},
    optional={
        "type": _field(
            st.sampled_from(["text_delta", "input_json_delta", "thinking_delta", "signature_delta"])
        ),
        "text": _field(st.text(max_size=6)),
        "partial_json": _field(st.sampled_from(['{"a":', " 1}", "{}", "[", "x"])),
        "thinking": _field(st.text(max_size=6)),
        "signature": _field(st.text(max_size=6)),
        "stop_reason": _field(st.just("end_turn")),
    },
)

anthropic_events = st.fixed_dictionaries(
    {
        "type": _field(
            st.sampled_from(
                [
                    "message_start",
                    "content_block_start",
                    "content_block_delta",
                    "content_block_stop",
                    "message_delta",
                    "message_stop",
                    "ping",
                    "error",
                ]
            )
        )
    },
    optional={
        "index": _field(st.integers(min_value=0, max_value=2)),
        "message": _field(anthropic_messages),
        "content_block": _field(_block),
        "delta": _field(_delta),
        "usage": _field(anthropic_usage),
        "error": _field(st.fixed_dictionaries({"type": _field(st.text(max_size=10))})),
    },
)


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


def event_datas(events: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    """An event's data: the JSON of an event, raw junk, or a terminator."""
    shaped = events.map(_dumps)
    return st.one_of(
        shaped,
        shaped,
        shaped,
        shaped,
        json_values.map(_dumps),
        st.sampled_from(["[DONE]", "", "{", "[" * 5000, '{"choices":[1]}', '{"choices":"abc"}']),
        st.text(max_size=20),
    )


@st.composite
def sse_streams(draw: st.DrawFn, events: st.SearchStrategy[Any]) -> list[bytes]:
    """A stream of server-sent events, as bytes cut into arbitrary chunks."""
    newline = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    body = b""
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        name = draw(st.one_of(st.none(), st.sampled_from(["message_start", "error", "x"])))
        if name is not None:
            body += b"event: " + name.encode() + newline
        if draw(st.booleans()):
            body += b": comment" + newline
        data = draw(event_datas(events))
        for line in data.split("\n"):
            body += b"data: " + line.encode() + newline
        body += newline
    body += draw(st.binary(max_size=8))  # trailing junk
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(body)), max_size=6)))
    chunks, start = [], 0
    for cut in [*cuts, len(body)]:
        chunks.append(body[start:cut])
        start = cut
    return chunks


_replies = st.builds(
    Reply,
    id=st.text(max_size=6),
    model=st.text(max_size=6),
    created=st.integers(min_value=0, max_value=2**40),
    text=st.text(max_size=30),
    calls=st.lists(
        st.tuples(
            st.text(min_size=1, max_size=6),
            st.text(min_size=1, max_size=6),
            st.dictionaries(
                st.text(max_size=4),
                scalars.filter(lambda v: not (isinstance(v, float) and math.isnan(v))),
                max_size=3,
            ).map(json.dumps),
        ),
        max_size=3,
    ).map(tuple),
    prompt_tokens=st.integers(min_value=0, max_value=2000),
    completion_tokens=st.integers(min_value=0, max_value=200),
    cached_tokens=st.integers(min_value=0, max_value=10),
)


@st.composite
def mutated_streams(draw: st.DrawFn, wire: str) -> list[bytes]:
    """A well-formed stream from the mock's renderer, with events dropped, repeated or
    replaced by junk, then cut into arbitrary chunks (reaches the deep parser paths)."""
    reply = draw(_replies)
    if wire == "anthropic":
        events = [(name, data) for name, data in anthropic_events_of(reply)]
        junk = anthropic_events
    else:
        events = [("", data) for data in openai_chunks_of(reply)] + [("", "[DONE]")]
        junk = openai_chunks
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        if not events:
            break
        at = draw(st.integers(min_value=0, max_value=len(events) - 1))
        action = draw(st.sampled_from(["drop", "repeat", "replace"]))
        if action == "drop":
            del events[at]
        elif action == "repeat":
            events.insert(at, events[at])
        else:
            events[at] = (events[at][0], draw(event_datas(junk)))
    body = b"".join(sse(data, name or None) for name, data in events)
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(body)), max_size=6)))
    chunks, start = [], 0
    for cut in [*cuts, len(body)]:
        chunks.append(body[start:cut])
        start = cut
    return chunks
