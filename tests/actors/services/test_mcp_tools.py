"""MCP tools in the agent loop: tool schemas for the OpenAI and Anthropic wire formats,
and model tool calls run through the MCP service actor, against the test MCP server and
the official mcp-server-time (both backends). Shapes are checked against the official
SDKs' own types."""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import InvalidRequest, Service, ServiceConfig, ServiceUnavailable, open_actor
from actors.resilience import RetryPolicy
from actors.services import (
    ChatResponse,
    MCPToolbox,
    ToolCall,
    ToolOutcome,
    Usage,
    anthropic_tool_result,
    anthropic_tool_uses,
    anthropic_tools,
    model_names,
    openai_tool_calls,
    openai_tool_message,
    openai_tools,
)
from actors.services.mcp import MCPClient, ToolResult, ToolSpec, server_command

pytestmark = pytest.mark.anyio

FAST = RetryPolicy.for_mcp(backoff_initial=0.01, backoff_max=0.05, budget_ratio=None)
TIME_COMMAND = [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"]
MODEL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
SPECS = [
    ToolSpec(
        name="echo",
        description="Returns the text.",
        input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
    ),
    ToolSpec(name="github.create_issue", input_schema={}),
]


def mcp_service(command: list[str], retry: RetryPolicy | None = FAST) -> Service[Any, Any]:
    return Service(
        "tools", lambda: MCPClient("tools", command=command), ServiceConfig.for_mcp(retry=retry)
    )


@pytest.fixture
async def test_tools() -> AsyncIterator[MCPToolbox]:
    async with open_actor(mcp_service(server_command()).actor()) as ref:
        yield await MCPToolbox.load(ref)


@pytest.fixture
async def time_tools() -> AsyncIterator[MCPToolbox]:
    async with open_actor(mcp_service(TIME_COMMAND).actor()) as ref:
        yield await MCPToolbox.load(ref)


def openai_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# -- schemas (pure) ----------------------------------------------------------------------------


def test_openai_tools_are_function_tools() -> None:
    """Each tool becomes an OpenAI function tool with its description and object schema,
    accepted by the openai SDK's own ChatCompletionToolParam."""
    from openai.types.chat import ChatCompletionToolParam

    tools = openai_tools(SPECS)
    assert tools[0] == {
        "type": "function",
        "function": {
            "name": "echo",
            "description": "Returns the text.",
            "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
        },
    }
    assert tools[1]["function"] == {
        "name": "github_create_issue",
        "parameters": {"type": "object", "properties": {}},
    }
    adapter = pydantic.TypeAdapter(list[ChatCompletionToolParam])
    assert adapter.validate_python(tools) == tools


def test_anthropic_tools_have_input_schemas() -> None:
    """Each tool becomes an Anthropic tool, accepted by the anthropic SDK's ToolParam."""
    from anthropic.types import ToolParam

    tools = anthropic_tools(SPECS)
    assert tools[0] == {
        "name": "echo",
        "description": "Returns the text.",
        "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
    }
    assert tools[1] == {
        "name": "github_create_issue",
        "input_schema": {"type": "object", "properties": {}},
    }
    adapter = pydantic.TypeAdapter(list[ToolParam])
    assert adapter.validate_python(tools) == tools


def test_names_that_fit_are_kept_and_others_aliased_uniquely() -> None:
    """A name outside [a-zA-Z0-9_-]{1,64} gets an alias that collides with nothing."""
    names = model_names(["a.b", "a_b", "a/b", "x" * 70, ""])
    assert names == {
        "a.b": "a_b_2",
        "a_b": "a_b",
        "a/b": "a_b_3",
        "x" * 70: "x" * 64,
        "": "tool",
    }


@settings(max_examples=300, deadline=None)
@given(names=st.lists(st.text(max_size=80), max_size=12))
def test_model_names_are_valid_unique_and_stable(names: list[str]) -> None:
    """Whatever the MCP names, every alias matches both APIs' name pattern, aliases are
    unique, and a name that already fits is its own alias."""
    mapping = model_names(names)
    assert set(mapping) == set(names)
    assert len(set(mapping.values())) == len(mapping)
    for name, alias in mapping.items():
        assert MODEL_NAME.fullmatch(alias)
        if MODEL_NAME.fullmatch(name):
            assert alias == name


def test_tool_messages_for_each_wire_format() -> None:
    """An outcome answers an OpenAI call as a tool message and an Anthropic call as a
    tool_result block (errors flagged), in the SDKs' own types."""
    from anthropic.types import ToolResultBlockParam
    from openai.types.chat import ChatCompletionToolMessageParam

    ok = ToolOutcome(call_id="c1", name="echo", text="hi")
    failed = ToolOutcome(call_id="c2", name="echo", text="bad input", is_error=True)
    assert openai_tool_message(ok) == {"role": "tool", "tool_call_id": "c1", "content": "hi"}
    assert openai_tool_message(failed)["content"] == "Error: bad input"
    assert anthropic_tool_result(failed) == {
        "type": "tool_result",
        "tool_use_id": "c2",
        "content": [{"type": "text", "text": "bad input"}],
        "is_error": True,
    }
    for message in map(openai_tool_message, (ok, failed)):
        pydantic.TypeAdapter(ChatCompletionToolMessageParam).validate_python(message)
    for block in map(anthropic_tool_result, (ok, failed)):
        pydantic.TypeAdapter(ToolResultBlockParam).validate_python(block)


def test_images_stay_images_for_anthropic_and_structured_content_is_json_for_openai() -> None:
    """An image block becomes an Anthropic base64 image; a result with only structured
    content is sent to OpenAI as its JSON."""
    image = {"type": "image", "data": "aGk=", "mimeType": "image/png"}
    outcome = ToolOutcome(call_id="c", name="shot", text="", content=(image,))
    assert anthropic_tool_result(outcome)["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "aGk="}}
    ]
    structured = ToolOutcome(call_id="c", name="t", text="", structured={"a": 1})
    assert openai_tool_message(structured)["content"] == '{"a": 1}'


def test_tool_calls_are_read_from_wire_dicts_and_sdk_objects() -> None:
    """Tool calls come from OpenAI wire dicts, the openai SDK's message, Anthropic
    tool_use blocks (dicts or SDK blocks, whose input becomes JSON text) and ChatResponse."""
    from anthropic.types import TextBlock, ToolUseBlock
    from openai.types.chat import ChatCompletionMessage

    wire = {"role": "assistant", "tool_calls": [openai_call("c1", "echo", '{"text": "a"}')]}
    expected = [ToolCall(id="c1", name="echo", arguments='{"text": "a"}')]
    assert openai_tool_calls(wire) == expected
    assert openai_tool_calls(ChatCompletionMessage.model_validate(wire)) == expected
    blocks = [
        TextBlock(type="text", text="let me check"),
        ToolUseBlock(type="tool_use", id="c1", name="echo", input={"text": "a"}),
    ]
    assert anthropic_tool_uses(blocks) == expected
    assert anthropic_tool_uses({"role": "assistant", "content": blocks}) == expected
    response = ChatResponse(
        content="", model="m", finish_reason="tool_calls", usage=Usage(), tool_calls=(*expected,)
    )
    assert openai_tool_calls(response) == expected
    assert anthropic_tool_uses(response) == expected


def test_a_tool_call_without_an_id_is_refused() -> None:
    """A call that could not be answered (no id) is InvalidRequest naming it."""
    with pytest.raises(InvalidRequest) as info:
        openai_tool_calls([{"type": "function", "function": {"name": "echo"}}])
    assert info.value.field == "tool_calls[0].id"


# -- through the MCP service actor -----------------------------------------------------------


async def test_openai_tool_calls_run_through_the_actor(test_tools: MCPToolbox) -> None:
    """Two calls from one turn run (concurrently) and answer in order."""
    message = {
        "role": "assistant",
        "tool_calls": [
            openai_call("c1", "slow", '{"seconds": 0.2}'),
            openai_call("c2", "add", '{"a": 2, "b": 3}'),
        ],
    }
    start = anyio.current_time()
    replies = await test_tools.run_openai(message)
    assert anyio.current_time() - start < 2
    assert replies == [
        {"role": "tool", "tool_call_id": "c1", "content": "slept 0.2"},
        {"role": "tool", "tool_call_id": "c2", "content": "5.0"},
    ]


MISTAKES = [  # (tool, arguments, what the error result says)
    ("echo", '{"text": ', "arguments are not JSON"),
    ("echo", '["text"]', "not a JSON object"),
    ("echo", '{"text": NaN}', "arguments.text must be a finite number"),
    ("nope", "{}", "Unknown tool: 'nope'"),
    ("fail", '{"message": "disk full"}', "disk full"),
    ("add", '{"a": "two", "b": 3}', "validation error"),
]


async def test_the_models_mistakes_are_reported_to_it(test_tools: MCPToolbox) -> None:
    """Bad JSON, non-object arguments, an unknown tool, the tool's own error and a schema
    violation, all in one turn, come back as error results for the model, not raised."""
    calls = [openai_call(f"c{i}", name, args) for i, (name, args, _) in enumerate(MISTAKES)]
    replies = await test_tools.run_openai(calls)
    assert [reply["tool_call_id"] for reply in replies] == [call["id"] for call in calls]
    for reply, (_, _, error) in zip(replies, MISTAKES, strict=True):
        assert reply["content"].startswith("Error")
        assert error in reply["content"]


async def test_an_image_result_reaches_anthropic_as_an_image(test_tools: MCPToolbox) -> None:
    """A tool's image content travels through the actor to an Anthropic image block."""
    import base64

    from actors.testing.mcp_server import PIXEL_PNG

    uses = [{"type": "tool_use", "id": "p1", "name": "pixel", "input": {}}]
    message = await test_tools.run_anthropic(uses)
    (result,) = message["content"]
    (image,) = result["content"]
    assert image["source"]["media_type"] == "image/png"
    assert base64.b64decode(image["source"]["data"]) == PIXEL_PNG


async def test_anthropic_tool_uses_run_against_mcp_server_time(time_tools: MCPToolbox) -> None:
    """tool_use blocks for the reference time server are answered in one user message of
    tool_result blocks; its JSON-RPC -32602 for an unknown name and its tool error for a
    bad timezone are error results."""
    from anthropic.types import MessageParam, ToolUseBlock

    names = {tool["name"] for tool in time_tools.anthropic_tools()}
    assert names == {"get_current_time", "convert_time"}
    blocks = [
        ToolUseBlock(type="tool_use", id="t1", name="get_current_time", input={"timezone": "UTC"}),
        ToolUseBlock(type="tool_use", id="t2", name="get_current_time", input={"timezone": "Mars"}),
    ]
    message = await time_tools.run_anthropic(blocks)
    pydantic.TypeAdapter(MessageParam).validate_python(message)
    first, second = message["content"]
    assert first["tool_use_id"] == "t1"
    assert '"timezone": "UTC"' in first["content"][0]["text"]
    assert "is_error" not in first
    assert second["is_error"] is True
    assert "Invalid timezone" in second["content"][0]["text"]


async def test_a_json_rpc_error_is_reported_to_the_model(time_tools: MCPToolbox) -> None:
    """The reference server answers a call to a tool it lacks with JSON-RPC -32602; the
    model reads it as an error result (the name is offered to the actor unchecked)."""
    toolbox = MCPToolbox(time_tools.ref, [*time_tools.tools, ToolSpec(name="get_weather")])
    (reply,) = await toolbox.run_openai([openai_call("c1", "get_weather", "{}")])
    assert reply["content"] == "Error: protocol error -32602: Unknown tool: get_weather"


async def test_service_failures_are_raised_unless_reported() -> None:
    """A service that cannot start raises ServiceUnavailable to the agent's code; with
    report_failures=True the model reads an error result instead."""
    broken = mcp_service([sys.executable, "-c", "raise SystemExit(1)"], retry=None)
    async with open_actor(broken.actor()) as ref:
        call = [openai_call("c1", "echo", '{"text": "x"}')]
        with pytest.raises(ServiceUnavailable):
            await MCPToolbox(ref, SPECS).run_openai(call)
        (reply,) = await MCPToolbox(ref, SPECS, report_failures=True).run_openai(call)
    assert reply["content"] == "Error: the tool is unavailable right now (ServiceUnavailable)."


class Recorder:
    """A stand-in ref that answers every CallTool (to run many tool calls quickly)."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    async def call(self, request: Any, timeout: float) -> ToolResult:
        self.calls.append(request)
        await anyio.lowlevel.checkpoint()
        return ToolResult(text=f"ran {request.name}")


tool_calls = st.lists(
    st.builds(
        ToolCall,
        id=st.text(min_size=1, max_size=5),
        name=st.sampled_from(["echo", "github_create_issue"]) | st.text(max_size=8),
        arguments=st.one_of(
            st.text(),
            st.sampled_from(['{"text": "x"}', "{}", "", "[]", "null", '{"a": NaN}', "[" * 5000]),
            st.dictionaries(st.text(), st.integers()).map(lambda d: __import__("json").dumps(d)),
        ),
    ),
    max_size=4,
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=200, deadline=None)
@given(calls=tool_calls)
def test_any_tool_call_gets_an_answer(backend: str, calls: list[ToolCall]) -> None:
    """Whatever the model sends, each call gets exactly one outcome with its own id, and
    only well-formed calls to listed tools reach the service."""
    ref = Recorder()
    toolbox = MCPToolbox(ref, SPECS)
    outcomes = anyio.run(toolbox.run_all, calls, backend=backend)
    assert [o.call_id for o in outcomes] == [c.id for c in calls]
    assert len(ref.calls) == sum(not o.is_error for o in outcomes)
    assert {c.name for c in ref.calls} <= {"echo", "github.create_issue"}
