"""A pydantic-ai agent given our SDK client: the framework's every model request goes
through a service actor, and its tools are an MCP server's, run through the MCP
service actor.

Run: python examples/pydantic_ai_agent.py [--backend asyncio]

(asyncio only: pydantic-ai schedules asyncio tasks of its own, so it does not run on
trio; the actors under it run on either.)

pydantic-ai's `OpenAIChatModel` takes an `AsyncOpenAI`: `openai_client(ref)` is one,
with its retries off, sending through the "gpt" service actor (`SDKClient` around our
`LLMClient`, which holds the URL and key). Each tool of the MCP server becomes a
pydantic-ai `Tool` with the server's own JSON schema, whose calls go through the
"tools" actor (`MCPToolbox.run`). The model is the local mock in its scripted
tool-calling mode. Then a run meets a 503 and a 429, both absorbed by the actor's
retries and limiter: the framework never sees them.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import anyio
from pydantic_ai import Agent, Tool
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

import supervisor as sv
from actors import Secret, Service, ServiceConfig
from actors.integrations import SDKClient, openai_client
from actors.resilience import RetryPolicy
from actors.services import MCPToolbox, ToolCall
from actors.services.llm import LLMClient
from actors.services.mcp import MCPClient, ToolSpec, server_command
from actors.testing import Behaviour, ToolRule, serve_mock_llm


def mcp_tool(toolbox: MCPToolbox, spec: ToolSpec) -> Tool[Any]:
    """One MCP tool as a pydantic-ai tool: the server's schema, run through the actor."""
    name = toolbox.names[spec.name]

    async def run(**arguments: Any) -> str:
        call = ToolCall(id=f"{name}-call", name=name, arguments=json.dumps(arguments))
        outcome = await toolbox.run(call)
        return outcome.text

    return Tool.from_schema(
        run, name=name, description=spec.description, json_schema=dict(spec.input_schema)
    )


async def main() -> None:
    async with serve_mock_llm() as server:
        server.control.tools = [ToolRule(when="sum", tool="add", arguments={"a": 20, "b": 22})]
        gpt = Service(
            "gpt",
            lambda: SDKClient(
                LLMClient("gpt", server.base_url, model="mock-gpt", api_key=Secret("sk-demo"))
            ),
            ServiceConfig.for_llm(
                requests_per_minute=600,
                tokens_per_minute=60_000,
                retry=RetryPolicy.for_llm(backoff_initial=0.05),
            ),
        )
        tools = Service(
            "tools", lambda: MCPClient("tools", command=server_command()), ServiceConfig.for_mcp()
        )
        tree = sv.SupervisorSpec(
            id="agent",
            children=[
                sv.ChildSpec(id="gpt", factory=gpt.actor, config=gpt.config.actor),
                sv.ChildSpec(id="tools", factory=tools.actor, config=tools.config.actor),
            ],
        )
        async with sv.start(tree) as sup, openai_client(sup.ref("gpt")) as client:
            toolbox = await MCPToolbox.load(sup.ref("tools"))
            agent = Agent(
                OpenAIChatModel("mock-gpt", provider=OpenAIProvider(openai_client=client)),
                instructions="Use the tools for arithmetic.",
                tools=[mcp_tool(toolbox, spec) for spec in toolbox.tools if spec.name == "add"],
            )
            result = await agent.run("What is the sum of 20 and 22?")
            print(f"agent answer: {result.output!r}")
            print(f"model requests through the actor: {gpt.stats.requests}")

            server.control.script(Behaviour.error(503), Behaviour.rate_limited(retry_after=0.2))
            result = await agent.run("Are you still there?")
            print(
                f"after a 503 and a 429: {result.output!r}"
                f" ({gpt.stats.attempts} attempts for {gpt.stats.requests} requests)"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend",
        choices=["asyncio"],
        default="asyncio",
        help="asyncio only: pydantic-ai creates asyncio tasks itself",
    )
    args = parser.parse_args()
    anyio.run(main, backend=args.backend)
