"""The mock LLM's scripted tool calling: reading a conversation, planning the answer.

A `ToolRule` makes the mock answer a prompt containing `when` with a call to `tool`
(when the request offers that tool), and, once the conversation carries the tool's
result, with a final answer that quotes it. Both wire formats are read: OpenAI
(assistant ``tool_calls``, ``tool`` messages) and Anthropic (``tool_use`` and
``tool_result`` blocks). Requests are untrusted here too: anything unreadable is
skipped, never raised.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = ["Conversation", "Plan", "ToolRule", "plan_answer", "read_conversation"]


DEFAULT_ANSWER = "{tool} returned: {result}"


def _as_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


@attrs.frozen(kw_only=True)
class ToolRule:
    """Answers prompts mentioning `when` with a tool call, then with its result.

    Attributes:
        when: Text that, found in the last user message (case-insensitive), triggers
            the call.
        tool: The tool's name; the rule applies only if the request offers it.
        arguments: The call's arguments.
        answer: The final answer once the result is back; ``{tool}`` and ``{result}``
            are replaced.
    """

    when: str
    tool: str
    arguments: Mapping[str, Any] = attrs.field(factory=dict, converter=_as_dict)
    answer: str = DEFAULT_ANSWER

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolRule:
        """From its JSON form (the fields as keys).

        Raises:
            ValueError: Unknown fields.
        """
        unknown = set(data) - {a.name for a in attrs.fields(cls)}
        if unknown:
            raise ValueError(f"unknown tool rule fields: {sorted(unknown)}")
        return cls(**data)


@attrs.frozen
class Conversation:
    """What the mock reads from a request's messages."""

    last_user_text: str
    results: tuple[tuple[str, str], ...]  # (call id, result text) after the last user text
    names: Mapping[str, str]  # call id -> tool name, from the assistant's calls
    offered: frozenset[str]  # tool names the request offers
    chars: int  # characters of text in the conversation


@attrs.frozen
class Plan:
    """The mock's answer: text, or tool calls ``(name, arguments JSON)``."""

    text: str
    calls: tuple[tuple[str, str], ...] = ()


def _text(content: object) -> str:
    """Text of a content string, or of the text parts/blocks of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces = []
        for part in content:
            if isinstance(part, Mapping):
                if isinstance(part.get("text"), str):
                    pieces.append(part["text"])
                elif part.get("type") == "tool_result":
                    pieces.append(_text(part.get("content")))
        return "".join(pieces)
    return ""


def _offered(tools: object) -> frozenset[str]:
    names: set[str] = set()
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, Mapping):
            continue
        function = tool.get("function")
        name = function.get("name") if isinstance(function, Mapping) else tool.get("name")
        if isinstance(name, str):
            names.add(name)
    return frozenset(names)


def read_conversation(request: Mapping[str, Any]) -> Conversation:
    """Reads the messages of an OpenAI or Anthropic request (never raises)."""
    messages = request.get("messages")
    last_user = ""
    results: list[tuple[str, str]] = []
    names: dict[str, str] = {}
    chars = 0
    system = request.get("system")
    chars += len(_text(system))
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, Mapping):
            continue
        role = message.get("role")
        content = message.get("content")
        chars += len(_text(content))
        if role == "tool":  # OpenAI tool result
            call_id = message.get("tool_call_id")
            results.append((call_id if isinstance(call_id, str) else "", _text(content)))
        elif role == "assistant":
            for call in message.get("tool_calls") or ():  # OpenAI
                function = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(function, Mapping) and isinstance(call.get("id"), str):
                    names[call["id"]] = str(function.get("name"))
            for block in content if isinstance(content, list) else ():  # Anthropic
                if isinstance(block, Mapping) and block.get("type") == "tool_use":
                    names[str(block.get("id"))] = str(block.get("name"))
        elif role == "user":
            blocks = content if isinstance(content, list) else ()
            tool_results = [
                b for b in blocks if isinstance(b, Mapping) and b.get("type") == "tool_result"
            ]
            if tool_results:
                results.extend(
                    (str(b.get("tool_use_id")), _text(b.get("content"))) for b in tool_results
                )
            else:
                last_user = _text(content)
                results = []
    return Conversation(
        last_user_text=last_user,
        results=tuple(results),
        names=names,
        offered=_offered(request.get("tools")),
        chars=chars,
    )


def plan_answer(rules: Sequence[ToolRule], conversation: Conversation) -> Plan | None:
    """The scripted answer, or None when no rule applies (the mock answers as usual).

    Tool results after the last user message get a final answer that quotes them;
    otherwise every rule whose `when` is in that message and whose tool is offered
    gives one call (several rules: parallel calls).
    """
    if not rules:
        return None
    if conversation.results:
        answers = []
        for call_id, result in conversation.results:
            name = conversation.names.get(call_id, "tool")
            rule = next((r for r in rules if r.tool == name), None)
            template = rule.answer if rule is not None else DEFAULT_ANSWER
            answers.append(template.replace("{tool}", name).replace("{result}", result))
        return Plan(text=" ".join(answers))
    prompt = conversation.last_user_text.lower()
    calls = tuple(
        (rule.tool, json.dumps(rule.arguments))
        for rule in rules
        if rule.when.lower() in prompt and rule.tool in conversation.offered
    )
    return Plan(text="", calls=calls) if calls else None
