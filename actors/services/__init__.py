"""Service actors: one actor per external service, owning its pool, breaker and limits.

The LLM (HTTP), SQL and MCP clients live in `actors.services.llm` (OpenAI-compatible),
`.anthropic`, `.sql` and `.mcp` and are imported only when used (their libraries are
optional extras). The chat request and answer types, shared by both LLM clients, are
here.
"""

from actors._public import publish as _publish
from actors.services._chat import ChatRequest, ChatResponse, ToolCall, Usage
from actors.services._mcp_tools import (
    MCPToolbox,
    ToolOutcome,
    anthropic_tool_result,
    anthropic_tool_uses,
    anthropic_tools,
    model_names,
    openai_tool_calls,
    openai_tool_message,
    openai_tools,
)

__all__ = [
    "ChatRequest",
    "ChatResponse",
    "MCPToolbox",
    "ToolCall",
    "ToolOutcome",
    "Usage",
    "anthropic_tool_result",
    "anthropic_tool_uses",
    "anthropic_tools",
    "model_names",
    "openai_tool_calls",
    "openai_tool_message",
    "openai_tools",
]

_publish(globals(), "actors.services")
