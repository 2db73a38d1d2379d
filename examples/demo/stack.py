"""The running system: mock services, the supervision tree, health, routers, dashboard.

Everything is local: two mock OpenAI-compatible servers on 127.0.0.1 ("llm", the
primary model, and "llm_mini", a cheaper one), both in their scripted tool-calling
mode; a SQLite file; the MCP test server as a subprocess. Each is one service actor
in the tree the TOML file declares. Both models are reached through the official
`openai` SDK whose every request goes through its service actor
(`actors.integrations.openai_client`). A health monitor probes every actor; fallback
routers send each request to its service, or to a fallback while the service is
degraded; the health app serves `/readyz`, `/tree` and the live `/dashboard`.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
from openai.types.chat import ChatCompletion

import supervisor as sv
from actors import PoolConfig, Service, ServiceConfig, load_services_config, serve_asgi
from actors.integrations import SDKClient, openai_client
from actors.services.llm import LLMClient
from actors.services.mcp import MCPClient, server_command
from actors.services.sql import Query, SQLiteClient
from actors.testing import ChaosClient, ChaosConfig, MockLLM, ToolRule, serve_mock_llm
from demo.settings import Settings
from supervisor.fallback import FallbackRouter, database_router, llm_router, mcp_router, target
from supervisor.health import (
    HealthMonitor,
    health_app,
    open_health_monitor,
    restarts_from,
    watch_children,
)

CANNED = "(I am busy right now; please try again in a moment.)"
MODELS = {"llm": "big", "llm_mini": "mini"}
# What the scripted models do: a prompt mentioning `when` gets a call to `tool`, and
# once the result is back, an answer quoting it (on both models, so a fallback can too).
TOOL_RULES = [
    ToolRule(when="add", tool="add", arguments={"a": 19, "b": 23}),
    ToolRule(when="echo", tool="echo", arguments={"text": "hello from the agent"}),
    ToolRule(when="notes", tool="query_notes", arguments={"question": "how many notes?"}),
]
SCHEMA = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, turn TEXT, answer TEXT)"


@attrs.frozen
class Ask:
    """One model request through a router: the SDK's arguments, and whether to stream."""

    kwargs: Mapping[str, Any]
    stream: bool = False


def canned_completion(_request: Ask) -> ChatCompletion:
    """The last resort of the model routers: a fixed answer, shaped like the SDK's."""
    return ChatCompletion.model_validate(
        {
            "id": "canned",
            "object": "chat.completion",
            "created": 0,
            "model": "canned",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": CANNED},
                }
            ],
        }
    )


@attrs.define(eq=False)
class Stack:
    """The parts the agents, the chaos and the view use."""

    root: str
    sup: sv.Supervisor
    monitor: HealthMonitor
    services: dict[str, Service[Any, Any]]
    mocks: dict[str, MockLLM]
    routers: dict[str, FallbackRouter[Any, Any]]
    dashboard: str
    db_chaos: ChaosClient[Any, Any, Any]

    def ref(self, service: str) -> Any:
        return self.sup.ref(service)

    def monitored(self, service: str) -> str:
        """The health monitor's (and the dashboard's) name of a service."""
        return f"{self.root}/{service}"


def _sdk_target(name: str, client: Any, service: str) -> Any:
    """A router target asking one model through its SDK client (streamed or not)."""

    async def ask(request: Ask) -> ChatCompletion:
        kwargs = {**request.kwargs, "model": MODELS[name]}
        if not request.stream:
            completion: ChatCompletion = await client.chat.completions.create(**kwargs)
            return completion
        async with client.chat.completions.stream(**kwargs) as stream:
            final: ChatCompletion = await stream.get_final_completion()
            return final

    return target(ask, name=name, service=service)


def _spec(config: Mapping[str, Any], factories: Any, break_recovery: bool) -> sv.SupervisorSpec:
    table = dict(config["supervisor"])
    if break_recovery:  # on purpose: a crashed child is never restarted
        table["children"] = [{**c, "restart": "temporary"} for c in table["children"]]
    return sv.spec_from_dict(table, factories)


@asynccontextmanager
async def open_stack(
    config: Mapping[str, Any], settings: Settings, *, break_recovery: bool = False
) -> AsyncIterator[Stack]:
    """Starts everything (the MCP server's start included) and stops it all on exit.

    Args:
        config: The whole TOML document (its ``[supervisor]`` and ``[services]``).
        break_recovery: Make every child temporary (no restarts), to show that the
            run then fails.
    """
    resilience = load_services_config(config)
    async with AsyncExitStack() as stack:
        mocks: dict[str, MockLLM] = {}
        urls: dict[str, str] = {}
        for name in MODELS:
            server = await stack.enter_async_context(serve_mock_llm(MockLLM(tools=TOOL_RULES)))
            mocks[name], urls[name] = server.control, server.base_url
        db_path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "agent.db"
        db_chaos: list[ChaosClient[Any, Any, Any]] = []

        def db_client() -> ChaosClient[Any, Any, Any]:
            # One injector across incarnations: a restart keeps the chaos switches.
            shared = db_chaos[0].injector if db_chaos else None
            client = ChaosClient(SQLiteClient("db", db_path), ChaosConfig(), injector=shared)
            db_chaos.append(client)
            return client

        def model(name: str) -> Service[Any, Any]:
            return Service(
                name,
                lambda: SDKClient(LLMClient(name, urls[name], model=MODELS[name])),
                ServiceConfig.from_resilience(
                    resilience[name], pool=PoolConfig(max_size=16, acquire_timeout=2.0)
                ),
            )

        services: dict[str, Service[Any, Any]] = {
            "llm": model("llm"),
            "llm_mini": model("llm_mini"),
            "db": Service(
                "db",
                db_client,
                ServiceConfig.from_resilience(resilience["db"], pool=PoolConfig(max_size=4)),
            ),
            "tools": Service(
                "tools",
                lambda: MCPClient("tools", command=server_command()),
                ServiceConfig.from_resilience(
                    resilience["tools"],
                    pool=PoolConfig(max_size=1, close_on_cancel=False),
                    max_concurrency=16,
                ),
            ),
        }
        factories = {name: svc.actor for name, svc in services.items()}
        spec = _spec(config, factories, break_recovery)
        sup = await stack.enter_async_context(sv.start(spec))
        monitor = await stack.enter_async_context(open_health_monitor(restarts=restarts_from(sup)))
        breakers = {f"{spec.id}/{name}": svc.breaker for name, svc in services.items()}
        watch_children(
            monitor,
            sup,
            config_of=lambda path: settings.health[path],
            breaker_of=lambda ref: breakers.get(ref.name),
        )
        refs = {name: sup.ref(name) for name in services}
        clients = {name: openai_client(refs[name]) for name in MODELS}
        for client in clients.values():
            stack.push_async_callback(client.close)
        asks = {name: _sdk_target(name, clients[name], f"{spec.id}/{name}") for name in MODELS}
        routers = {
            "llm": llm_router(
                asks["llm"],
                asks["llm_mini"],
                canned=canned_completion,
                health=monitor,
                name=f"{spec.id}/llm",
            ),
            "llm_mini": llm_router(
                asks["llm_mini"],
                asks["llm"],
                canned=canned_completion,
                health=monitor,
                name=f"{spec.id}/llm_mini",
            ),
            "db": database_router(refs["db"], health=monitor),
            "tools": mcp_router(refs["tools"], degraded="(tools unavailable)", health=monitor),
        }
        url = await stack.enter_async_context(
            serve_asgi(health_app(monitor, tree=sup, services=services))
        )
        with anyio.fail_after(30):  # the schema, and the MCP server's first start
            await refs["db"].call(Query(SCHEMA))
        yield Stack(
            root=spec.id,
            sup=sup,
            monitor=monitor,
            services=services,
            mocks=mocks,
            routers=routers,
            dashboard=f"{url}/dashboard",
            db_chaos=db_chaos[0],
        )
