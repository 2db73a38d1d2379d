"""Fallback handlers per service type, and routers built from them.

=========  ===========================================  =================================
service    fallback order                               builder
=========  ===========================================  =================================
LLM        a cheaper model (another ref), then a        `llm_router(primary, cheaper,
           canned answer                                canned=...)`
Database   a read replica, then the response cache      `database_router(primary, replica,
           (fresh, then stale when all failed)          cache=...)`
MCP        a degraded tool result (an error result      `mcp_router(primary,
           the agent can read, never an exception)      degraded=...)`
=========  ===========================================  =================================

Each builder uses that service type's classifier (`classifier_for("llm")`, ...), so
only failures a retry could fix (timeouts, 429, 5xx, lost connections, closed
transports) move a request on; a 400 or a tool's own error is raised to the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors.resilience import CircuitBreaker
from supervisor.fallback._cache import ResponseCache
from supervisor.fallback._router import FallbackRouter, HealthSource, Target, route
from supervisor.health._monitor import HealthMonitor
from supervisor.health._state import HealthStatus

__all__ = [
    "canned_answer",
    "database_router",
    "degraded_tool_result",
    "llm_router",
    "mcp_router",
]


def canned_answer(answer: Any | Callable[[Any], Any], *, name: str = "canned") -> Target[Any, Any]:
    """A target that always answers `answer` (or `answer(request)` if it is callable).

    Never fails unless the callable raises; not a checkpoint.
    """
    make: Callable[[Any], Any] = answer if callable(answer) else (lambda _request: answer)

    async def canned(request: Any, timeout: float | None) -> Any:
        return make(request)

    return Target(name=name, invoke=canned)


def degraded_tool_result(
    message: str = "the tool is temporarily unavailable; try again later",
    *,
    name: str = "degraded",
) -> Target[Any, Any]:
    """A target answering an MCP-style tool result that says the tool is degraded.

    The result is a dict shaped like MCP's ``CallToolResult``:
    ``{"content": [{"type": "text", "text": message}], "isError": True,
    "structuredContent": {"degraded": True, "tool": <request's tool name or None>}}``,
    so an agent sees an error result it can reason about instead of an exception.
    """

    async def degraded(request: Any, timeout: float | None) -> Any:
        tool = getattr(request, "name", None)
        if tool is None and isinstance(request, dict):
            tool = request.get("name") or request.get("tool")
        return {
            "content": [{"type": "text", "text": message}],
            "isError": True,
            "structuredContent": {"degraded": True, "tool": tool},
        }

    return Target(name=name, invoke=degraded)


def llm_router(
    primary: Any,
    cheaper: Any | None = None,
    *,
    canned: Any | Callable[[Any], Any] | None = None,
    health: HealthSource | HealthMonitor | None = None,
    breaker: CircuitBreaker | None = None,
    cache: ResponseCache[Any, Any] | None = None,
    avoid_at: HealthStatus | str = HealthStatus.DEGRADED,
    name: str | None = None,
) -> FallbackRouter[Any, Any]:
    """An LLM primary, then a cheaper model, then (fresh cache, then) a canned answer.

    Args:
        cheaper: Another model's ref or async function (optional).
        canned: A fixed answer, or a function of the request (optional).
        cache: Consulted after the cheaper model and before the canned answer.

    Raises:
        ConfigError: As `route`.
    """
    return _typed_route(
        "llm",
        primary,
        cheaper,
        cache,
        None if canned is None else canned_answer(canned),
        name=name,
        health=health,
        avoid_at=avoid_at,
        breaker=breaker,
        cache=cache,
    )


def database_router(
    primary: Any,
    replica: Any | None = None,
    *,
    cache: ResponseCache[Any, Any] | None = None,
    health: HealthSource | HealthMonitor | None = None,
    breaker: CircuitBreaker | None = None,
    avoid_at: HealthStatus | str = HealthStatus.DEGRADED,
    name: str | None = None,
) -> FallbackRouter[Any, Any]:
    """A database primary, then a read replica, then the response cache.

    Raises:
        ConfigError: As `route`.
    """
    return _typed_route(
        "database",
        primary,
        replica,
        cache,
        name=name,
        health=health,
        avoid_at=avoid_at,
        breaker=breaker,
        cache=cache,
    )


def mcp_router(
    primary: Any,
    *,
    degraded: str | Target[Any, Any] | None = None,
    health: HealthSource | HealthMonitor | None = None,
    breaker: CircuitBreaker | None = None,
    avoid_at: HealthStatus | str = HealthStatus.DEGRADED,
    name: str | None = None,
) -> FallbackRouter[Any, Any]:
    """An MCP tool server, then a degraded tool result.

    Args:
        degraded: The message of the degraded result, or your own target
            (default: `degraded_tool_result()`).

    Raises:
        ConfigError: As `route`.
    """
    if degraded is None or isinstance(degraded, str):
        fallback = degraded_tool_result(degraded) if degraded else degraded_tool_result()
    else:
        fallback = degraded
    return _typed_route(
        "mcp", primary, fallback, name=name, health=health, avoid_at=avoid_at, breaker=breaker
    )


def _typed_route(
    service_type: str, primary: Any, *fallbacks: Any, **options: Any
) -> FallbackRouter[Any, Any]:
    """`route` with the service type's classifier and the fallbacks that are not `None`."""
    return route(
        primary, *(fb for fb in fallbacks if fb is not None), classifier=service_type, **options
    )
