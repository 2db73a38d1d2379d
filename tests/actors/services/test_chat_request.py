"""Chat requests: the boundary check (`check_request` refuses with `InvalidRequest`
naming the field), the fields carried through, the token estimate and bound, and the
clients' configuration checks (`ConfigError`)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import ConfigError, InvalidRequest, Secret
from actors.services import ChatRequest, ChatResponse, Usage
from actors.services.anthropic import AnthropicClient
from actors.services.llm import LLMClient

from .llm_strategies import json_values

OPENAI = LLMClient("llm", "http://127.0.0.1:9/v1", model="m")
ANTHROPIC = AnthropicClient("claude", "http://127.0.0.1:9/v1", model="m")
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def refused(client: Any, request: object) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        client.check_request(request)
    return info.value


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (ChatRequest.user("x", max_tokens=-5), "max_tokens"),
        (ChatRequest.user("x", max_tokens=0), "max_tokens"),
        (ChatRequest.user("x", max_tokens=2.5), "max_tokens"),
        (ChatRequest.user("x", max_tokens=True), "max_tokens"),
        (ChatRequest.user("x", temperature=math.nan), "temperature"),
        (ChatRequest.user("x", temperature=-1), "temperature"),
        (ChatRequest.user("x", model=""), "model"),
        (ChatRequest.user("x", stream="yes"), "stream"),
        (ChatRequest.user(None), "messages[0].content"),  # type: ignore[arg-type]
        (ChatRequest(messages=()), "messages"),
        (ChatRequest(messages=[{"content": "no role"}]), "messages[0].role"),
        (ChatRequest(messages=[{"role": "wizard", "content": "x"}]), "messages[0].role"),
        (ChatRequest(messages=["just a string"]), "messages[0]"),
        (ChatRequest(messages="abc"), "messages"),
        (ChatRequest(messages=[{"role": "user", "content": [1]}]), "messages[0].content[0]"),
        (
            ChatRequest(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]),
            "messages[0].content[0].text",
        ),
        (ChatRequest(messages=[{"role": "tool", "content": "r"}]), "messages[0].tool_call_id"),
        (
            ChatRequest(messages=[{"role": "assistant", "content": None}]),
            "messages[0].content",
        ),
        (
            ChatRequest(messages=[{"role": "assistant", "content": None, "tool_calls": [{}]}]),
            "messages[0].tool_calls[0]",
        ),
        (ChatRequest.user("x", extra={"model": "other"}), "extra.model"),
        (ChatRequest.user("x", seed={1, 2}), "extra.seed"),
        (ChatRequest.user("x", stop=[math.inf]), "extra.stop[0]"),
        (ChatRequest(messages=[{"role": "user", "content": "x", 5: "y"}]), "messages[0]"),
        ("not a request", "request"),
    ],
)
def test_malformed_requests_are_refused_naming_the_field(request_: object, field: str) -> None:
    """check_request refuses each malformed request with InvalidRequest naming the field."""
    error = refused(OPENAI, request_)
    assert error.field == field
    assert error.service == "llm"


def test_every_role_and_tool_turn_is_accepted() -> None:
    """System, developer, user parts, assistant tool calls and tool results pass."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": [{"type": "text", "text": "rules"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    OPENAI.check_request(ChatRequest.create(messages, tools=TOOLS, tool_choice="auto", seed=7))


def test_anthropic_accepts_blocks_and_refuses_openai_roles() -> None:
    """Anthropic takes content blocks and tool_result turns; a 'tool' role is refused."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}],
        },
    ]
    ANTHROPIC.check_request(ChatRequest.create(messages))
    tool_role = ChatRequest(messages=[{"role": "tool", "tool_call_id": "x", "content": "r"}])
    assert refused(ANTHROPIC, tool_role).field == "messages[0].role"


def test_anthropic_refuses_a_system_prompt_given_twice() -> None:
    """System messages and extra={'system': ...} together are refused."""
    request = ChatRequest.create(
        [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}], system="c"
    )
    assert refused(ANTHROPIC, request).field == "extra.system"


def test_anthropic_refuses_a_conversation_of_system_messages_only() -> None:
    """Only system messages leave nothing to answer."""
    request = ChatRequest(messages=[{"role": "system", "content": "a"}])
    assert refused(ANTHROPIC, request).field == "messages"


@settings(max_examples=200, deadline=None)
@given(st.lists(json_values, max_size=3), json_values)
def test_check_request_raises_only_invalid_request(messages: list[Any], extra: Any) -> None:
    """Arbitrary messages and extra fields are accepted or refused with InvalidRequest,
    and whatever is accepted can be built and encoded by both clients."""
    request = ChatRequest(
        messages=messages, extra=extra if isinstance(extra, dict) else {"x": extra}
    )
    for client in (OPENAI, ANTHROPIC):
        try:
            client.check_request(request)
        except InvalidRequest:
            continue
        client._encode(client.body(request))
        client.costs(request)
        request.usage_bound()


def test_create_puts_other_keywords_in_extra() -> None:
    """Keywords that are not fields are body fields in `extra`, sent untouched."""
    request = ChatRequest.user("x", max_tokens=5, tools=TOOLS, response_format={"type": "json"})
    assert request.max_tokens == 5
    assert request.extra == {"tools": TOOLS, "response_format": {"type": "json"}}
    body = OPENAI.body(request)
    assert body["tools"] == TOOLS
    assert body["response_format"] == {"type": "json"}
    assert body["max_tokens"] == 5


def test_max_completion_tokens_field_is_configurable() -> None:
    """With max_tokens_field="max_completion_tokens" the budget goes by that name."""
    client = LLMClient("llm", "http://h/v1", model="m", max_tokens_field="max_completion_tokens")
    body = client.body(ChatRequest.user("x", max_tokens=9))
    assert body["max_completion_tokens"] == 9
    assert "max_tokens" not in body


def test_stream_asks_for_usage() -> None:
    """A streamed OpenAI request asks for the usage chunk, keeping other stream options."""
    request = ChatRequest.user("x", stream=True, stream_options={"other": 1})
    assert OPENAI.body(request)["stream_options"] == {"other": 1, "include_usage": True}


def test_anthropic_body_lifts_system_and_fills_max_tokens() -> None:
    """System messages become the system field; the client's max_tokens fills the budget."""
    request = ChatRequest.create(
        [
            {"role": "system", "content": "one"},
            {"role": "system", "content": "two"},
            {"role": "user", "content": "hi"},
        ]
    )
    body = AnthropicClient("c", "http://h/v1", model="m", max_tokens=77).body(request)
    assert body["system"] == "one\n\ntwo"
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["max_tokens"] == 77


def test_estimate_counts_tools_and_content_parts() -> None:
    """Tool schemas and image parts raise the token estimate."""
    plain = ChatRequest.user("describe", max_tokens=10)
    with_tools = ChatRequest.user("describe", max_tokens=10, tools=TOOLS * 10)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 10_000}}
    with_image = ChatRequest.user([{"type": "text", "text": "describe"}, image], max_tokens=10)
    assert with_tools.estimated_tokens() > plain.estimated_tokens() + 50
    # An image counts as about 1,000 tokens, not as its 10,000 characters of base64.
    assert 900 < with_image.estimated_tokens() - plain.estimated_tokens() < 1_100


def test_costs_name_every_limit_the_client_charges() -> None:
    """costs() charges requests, tokens and their input and output parts."""
    costs = ANTHROPIC.costs(ChatRequest.user("hello world!", max_tokens=100))
    assert costs["requests"] == 1.0
    assert costs["output_tokens"] == 100.0
    assert costs["tokens"] == costs["input_tokens"] + costs["output_tokens"]


def test_usage_bound_follows_the_budget() -> None:
    """The completion bound is the request's budget (times n choices)."""
    assert ChatRequest.user("x", max_tokens=50).usage_bound().completion == 50
    assert ChatRequest.user("x", max_tokens=50, n=3).usage_bound().completion == 150


def test_usage_maps_to_the_limit_names() -> None:
    """usage() reports tokens, input_tokens and output_tokens from the answer's usage."""
    reply = ChatResponse(
        content="", model="m", finish_reason=None, usage=Usage(7, 3, 10, cached_tokens=2)
    )
    assert OPENAI.usage(reply) == {"tokens": 10.0, "input_tokens": 7.0, "output_tokens": 3.0}


def test_tool_results_follow_the_wire_format() -> None:
    """tool_results() writes tool messages (OpenAI) or tool_result blocks (Anthropic)."""
    base: dict[str, Any] = {"content": "", "model": "m", "finish_reason": None, "usage": Usage()}
    openai = ChatResponse(**base).tool_results({"c1": "42"})
    anthropic = ChatResponse(**base, wire="anthropic").tool_results({"t1": "42"})
    assert openai == ({"role": "tool", "tool_call_id": "c1", "content": "42"},)
    assert anthropic == (
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42"}],
        },
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_connections": 0}, "max_connections"),
        ({"max_connections": 2.5}, "max_connections"),
        ({"read_timeout": -1}, "read_timeout"),
        ({"read_timeout": math.nan}, "read_timeout"),
        ({"connect_timeout": math.inf}, "connect_timeout"),
        ({"probe": "ping"}, "probe"),
        ({"base_url": "ftp://x"}, "base_url"),
        ({"model": ""}, "model"),
        ({"api_key": "sk-plain-string"}, "api_key"),
        ({"default_headers": {"Authorization": "Bearer x"}}, "default_headers.Authorization"),
        ({"default_headers": {"x": 1}}, "default_headers"),
        ({"max_tokens_field": "tokens"}, "max_tokens_field"),
    ],
)
def test_invalid_configuration_is_a_config_error(changes: dict[str, Any], field: str) -> None:
    """Each invalid LLMClient option raises ConfigError naming it."""
    options: dict[str, Any] = {"base_url": "http://h/v1", "model": "m", **changes}
    with pytest.raises(ConfigError) as info:
        LLMClient("llm", **options)
    assert info.value.field == field


def test_config_error_never_shows_a_secret() -> None:
    """A rejected api_key or base_url query never shows the secret in the error."""
    with pytest.raises(ConfigError) as info:
        LLMClient("llm", "ftp://h/v1?key=sk-secret-0123456789", model="m")
    assert "sk-secret" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        LLMClient("llm", "http://h/v1", model="m", api_key="sk-secret-0123456789")  # type: ignore[arg-type]
    assert "sk-secret" not in str(info.value)


@pytest.mark.parametrize("changes", [{"max_tokens": 0}, {"read_timeout": -1}])
def test_invalid_anthropic_configuration_is_a_config_error(changes: dict[str, Any]) -> None:
    """AnthropicClient checks its options the same way."""
    with pytest.raises(ConfigError):
        AnthropicClient("c", model="m", api_key=Secret("k"), **changes)
