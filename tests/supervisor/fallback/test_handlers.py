"""Per-service fallback handlers: LLM, database and MCP routers."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from supervisor.fallback import (
    ResponseCache,
    Routed,
    canned_answer,
    create_cache,
    database_router,
    degraded_tool_result,
    llm_router,
    mcp_router,
)

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


class HTTPError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(status_code)
        self.status_code = status_code


class Service:
    def __init__(self, name: str, error: Exception | None = None) -> None:
        self.__name__ = name
        self.error = error

    async def __call__(self, request: Any) -> Any:
        if self.error is not None:
            raise self.error
        return f"{self.__name__}:{request}"


async def test_llm_router_tries_the_cheaper_model_then_the_canned_answer() -> None:
    """An overloaded LLM (529) falls back to the cheaper model, then to a canned answer."""
    main, cheap = Service("gpt-big", HTTPError(529)), Service("gpt-small")
    router = llm_router(main, cheap, canned="I cannot answer right now.")
    assert await router.call("hi") == Routed("gpt-small:hi", "fallback:gpt-small")
    cheap.error = HTTPError(503)
    assert await router.call("hi") == Routed("I cannot answer right now.", "fallback:canned")


async def test_llm_router_raises_a_bad_request() -> None:
    """A 400 from the LLM is permanent: no fallback hides it."""
    router = llm_router(Service("big", HTTPError(400)), Service("small"), canned="x")
    with pytest.raises(HTTPError):
        await router.call("hi")


async def test_llm_router_serves_cached_answers_before_the_canned_one() -> None:
    """With a cache, a known prompt gets the cached answer before the canned one."""
    main = Service("big")
    cache: ResponseCache[str, str] = create_cache("answers", ttl=60)
    router = llm_router(main, canned=lambda req: f"sorry ({req})", cache=cache)
    await router.call("known")
    main.error = TimeoutError()
    assert await router.call("known") == Routed("big:known", "cache")
    assert await router.call("new") == Routed("sorry (new)", "fallback:canned")


async def test_database_router_uses_the_replica_then_the_cache() -> None:
    """A lost database connection reads from the replica, then from the cache (stale ok)."""
    primary, replica = Service("db"), Service("replica")
    cache: ResponseCache[str, str] = create_cache("rows", ttl=1)
    router = database_router(primary, replica, cache=cache)
    await router.call("select 1")
    primary.error = ConnectionError("lost")
    assert (await router.call("select 1")).source == "fallback:replica"
    replica.error = ConnectionError("lost too")
    assert await router.call("select 1") == Routed("db:select 1", "cache")
    await anyio.sleep(2)
    assert await router.call("select 1") == Routed("db:select 1", "cache", stale=True)


async def test_mcp_router_answers_a_degraded_tool_result() -> None:
    """A broken MCP transport yields an error tool result the agent can read."""
    router = mcp_router(Service("mcp", ConnectionError("closed")), degraded="search is down")
    routed = await router.call({"name": "search", "arguments": {}})
    assert routed.source == "fallback:degraded"
    assert routed.value == {
        "content": [{"type": "text", "text": "search is down"}],
        "isError": True,
        "structuredContent": {"degraded": True, "tool": "search"},
    }


async def test_mcp_tool_errors_are_not_hidden() -> None:
    """An MCP tool's own error is not a transport failure and is raised."""

    class ToolError(Exception):
        is_tool_error = True

    router = mcp_router(Service("mcp", ToolError("bad args")))
    with pytest.raises(ToolError):
        await router.call({"name": "search"})


async def test_canned_answer_and_degraded_result_are_plain_targets() -> None:
    """canned_answer and degraded_tool_result answer without failing."""
    assert await canned_answer(42).invoke("q", None) == 42
    result = await degraded_tool_result().invoke(object(), None)
    assert result["isError"] is True
    assert result["structuredContent"]["tool"] is None
