"""The agent: turns of a tool-calling loop, each with its own deadline.

A turn asks the primary model (through its router) a question with tools offered: the
MCP server's ``add`` and ``echo``, and ``query_notes``, a SQL query the agent runs
itself. The model (the mock, in its scripted tool-calling mode) decides which tools
to call; the agent runs each call through its service actor (MCP tools through the
MCP actor, ``query_notes`` through the database actor) and sends the results back,
until the model answers in text (streamed, after the first step). The cheaper model
then summarises the answer, and the agent stores both in SQL. One deadline covers
the whole turn: every call in it gets what remains of it.

Every request is counted as issued here, before it is sent, and as completed by
`Routes`, where its answer or failure comes back (see `demo.ledger`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from actors.services import (
    MCPToolbox,
    ToolOutcome,
    openai_tool_calls,
    openai_tool_message,
    openai_tools,
)
from actors.services.mcp import CallTool, ListTools, ToolResult, ToolSpec
from actors.services.sql import Query
from demo.lateness import Overrun
from demo.ledger import Ledger
from demo.stack import MODELS, Ask, Stack
from supervisor.fallback import Routed

QUERY_NOTES = {
    "type": "function",
    "function": {
        "name": "query_notes",
        "description": "Answers a question about the agent's notes with a SQL query.",
        "parameters": {"type": "object", "properties": {"question": {"type": "string"}}},
    },
}
MCP_TOOLS = ("add", "echo")  # of the test server's tools, the ones the agent offers
WANTS = ("add two numbers", "echo a greeting", "count the notes")
# Which service answered, by router and source: recovery needs real answers only.
ANSWERED_BY = {
    "llm": {"primary": "llm", "fallback:llm_mini": "llm_mini"},
    "llm_mini": {"primary": "llm_mini", "fallback:llm": "llm"},
    "db": {"primary": "db"},
    "tools": {"primary": "tools"},
}


def _leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


class Routes:
    """Sends requests along their routers and counts each one where it completes."""

    def __init__(
        self,
        stack: Stack,
        ledger: Ledger,
        start: float,
        on_answer: Callable[[str, float], None],
    ) -> None:
        self.stack = stack
        self.ledger = ledger
        self.start = start
        self.on_answer = on_answer

    async def call(self, service: str, request: Any, deadline: float) -> Routed[Any]:
        """Routes `request` to `service` (or its fallbacks) within `deadline`.

        Raises:
            Exception: As the router, when no route answered.
        """
        began = anyio.current_time()
        source: str | None = None
        error: str | None = None
        try:
            routed = await self.stack.routers[service].call(
                request, timeout=max(deadline - began, 1e-3)
            )
            source = routed.source
        except anyio.get_cancelled_exc_class():
            error = "Cancelled"  # by the turn's deadline, or a sibling call's failure
            raise
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            ended = anyio.current_time()
            self.ledger.complete(service, source, error, ended - began)
            if ended > deadline:
                self.ledger.overruns.append(Overrun(service, deadline, ended))
        answered = ANSWERED_BY[service].get(routed.source)
        if answered is not None:
            self.on_answer(answered, ended - self.start)
        return routed


class _RoutedTools:
    """The MCP actor's ref as `MCPToolbox` sees it, through the tools router."""

    def __init__(self, routes: Routes, deadline: float) -> None:
        self.routes = routes
        self.deadline = deadline
        self.fallback = False  # whether the answer came from the degraded fallback

    async def call(self, request: CallTool, *, timeout: float | None = None) -> ToolResult:
        routed = await self.routes.call("tools", request, self.deadline)
        self.fallback = routed.from_fallback
        value = routed.value
        if isinstance(value, ToolResult):
            return value
        # The degraded fallback: an MCP-shaped error result the model can read.
        text = "".join(part.get("text", "") for part in value.get("content", ()))
        return ToolResult(text=text, is_error=True)


class Agent:
    """Runs turns until the run's end, counting every request and every turn."""

    def __init__(
        self, routes: Routes, tools: Sequence[ToolSpec], turn_timeout: float, seed: int
    ) -> None:
        """Offers the model `tools` (the MCP server's, see `list_tools`) and ``query_notes``."""
        self.routes = routes
        self.ledger = routes.ledger
        self.timeout = turn_timeout
        self.rng = random.Random(seed)
        self.mcp_tools = tuple(tools)
        self.schemas = [*openai_tools(self.mcp_tools), QUERY_NOTES]

    @staticmethod
    async def list_tools(tools_ref: Any) -> list[ToolSpec]:
        """The MCP server's tools the agent offers (starting the server if need be)."""
        listed = await tools_ref.call(ListTools(), timeout=30)
        return [tool for tool in listed if tool.name in MCP_TOOLS]

    async def run(self, number: int, until: float) -> None:
        """One agent: turns back to back until `until` (a turn under way finishes)."""
        turn = 0
        while anyio.current_time() < until:
            turn += 1
            await self.turn(f"{number}.{turn}")
            await anyio.sleep(self.rng.uniform(0.0, 0.05))

    async def ask(self, service: str, request: Any, deadline: float) -> Routed[Any]:
        self.ledger.issue(service)
        return await self.routes.call(service, request, deadline)

    async def turn(self, name: str) -> None:
        """One full loop: model, tools, model..., summary, store; within one deadline."""
        self.ledger.turns_started += 1
        deadline = anyio.current_time() + self.timeout
        fallbacks: list[bool] = []
        outcome = "error"
        with anyio.move_on_at(deadline):
            try:
                answer = await self._loop(name, deadline, fallbacks)
                summary = await self.ask(
                    "llm_mini",
                    Ask(
                        {
                            "model": MODELS["llm_mini"],
                            "messages": [{"role": "user", "content": f"Summarise: {answer}"}],
                            "max_tokens": 40,
                        }
                    ),
                    deadline,
                )
                fallbacks.append(summary.from_fallback)
                text = summary.value.choices[0].message.content or ""
                sql = "INSERT INTO notes (turn, answer) VALUES (?, ?)"
                stored = await self.ask("db", Query(sql, [name, f"{answer} / {text}"]), deadline)
                fallbacks.append(stored.from_fallback)
                outcome = "degraded" if any(fallbacks) else "ok"
            except Exception as exc:
                outcome = "error"
                self.ledger.errors["turn"][type(_leaf(exc)).__name__] += 1
        ended = anyio.current_time()
        if ended > deadline:
            self.ledger.overruns.append(Overrun("turn", deadline, ended))
        self.ledger.turn_finished(outcome, int(ended - self.routes.start))

    async def _loop(self, name: str, deadline: float, fallbacks: list[bool]) -> str:
        """Model and tools until the model answers in text; returns the answer."""
        wants = self.rng.sample(WANTS, self.rng.randint(1, len(WANTS)))
        messages: list[Any] = [
            {"role": "user", "content": f"Turn {name}: please {' and '.join(wants)}."}
        ]
        for step in range(4):
            routed = await self.ask(
                "llm",
                Ask(
                    {
                        "model": MODELS["llm"],
                        "messages": messages,
                        "tools": self.schemas,
                        "max_tokens": 200,
                    },
                    stream=step > 0,
                ),
                deadline,
            )
            fallbacks.append(routed.from_fallback)
            message = routed.value.choices[0].message
            if not message.tool_calls:
                return str(message.content or "")
            messages.append(message.model_dump(exclude_none=True))
            messages.extend(await self._run_tools(message, deadline, fallbacks))
        raise RuntimeError("the model kept calling tools")

    async def _run_tools(
        self, message: Any, deadline: float, fallbacks: list[bool]
    ) -> list[dict[str, Any]]:
        """Runs the model's tool calls concurrently; their answers, in order."""
        calls = openai_tool_calls(message)
        outcomes: list[ToolOutcome | None] = [None] * len(calls)

        async def run(index: int) -> None:
            call = calls[index]
            if call.name == "query_notes":
                routed = await self.ask("db", Query("SELECT count(*) FROM notes"), deadline)
                fallbacks.append(routed.from_fallback)
                count = routed.value.rows[0][0]
                outcomes[index] = ToolOutcome(call.id, call.name, f"{count} notes so far")
                return
            self.ledger.issue("tools")
            tools = _RoutedTools(self.routes, deadline)
            toolbox = MCPToolbox(tools, self.mcp_tools, timeout=deadline - anyio.current_time())
            outcomes[index] = await toolbox.run(call)
            fallbacks.append(tools.fallback)

        async with anyio.create_task_group() as tg:
            for index in range(len(calls)):
                tg.start_soon(run, index)
        return [openai_tool_message(o) for o in outcomes if o is not None]
