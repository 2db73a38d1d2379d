"""Service actors: one actor per external service, owning its pool, breaker and limits.

The LLM (HTTP), SQL and MCP clients live in `actors.services.llm`, `.sql` and `.mcp`
and are imported only when used (their libraries are optional extras).
"""

from actors._public import publish as _publish
from actors.services._actor import Service, ServiceActor, ServiceConfig, ServiceStats
from actors.services._base import Secret, ServiceClient

__all__ = ["Secret", "Service", "ServiceActor", "ServiceClient", "ServiceConfig", "ServiceStats"]

_publish(globals(), "actors.services")
