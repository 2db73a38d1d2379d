"""A two-level supervision tree: a crash, a restart, and an escalation.

Run: python examples/supervision_tree.py [--backend asyncio|trio]

The tree:

    agent (one_for_one, 3 restarts in 10 s)
    ├── cache                       a worker
    └── tools (one_for_all, 1 restart in 10 s)
        ├── search                  a worker
        └── calculator              a worker

1. `calculator` crashes: `tools` restarts both its children (one_for_all); the caller
   got the handler's error, and the same ref answers the next call.
2. `calculator` crashes again within 10 s: `tools` exceeds its intensity, stops its
   children and fails to `agent`, which restarts the whole `tools` subtree.
"""

from __future__ import annotations

import argparse
import logging

import anyio
import structlog

import supervisor as sv
from actors import Actor


class Tool(Actor[str, str]):
    """Answers "ping"; "boom" crashes it (a bug on a malformed request, say)."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def handle(self, msg: str) -> str:
        if msg == "boom":
            raise ValueError(f"{self.name} got a malformed request")
        return f"{self.name}: {msg}"


TREE = sv.SupervisorSpec(
    id="agent",
    max_restarts=3,
    period=10,
    backoff=sv.Backoff(min=0.05, max=1, jitter=0),
    children=[
        sv.ChildSpec(id="cache", factory=lambda: Tool("cache")),
        sv.SupervisorSpec(
            id="tools",
            strategy="one_for_all",
            max_restarts=1,
            period=10,
            backoff=sv.Backoff(min=0.05, max=1, jitter=0),
            children=[
                sv.ChildSpec(id="search", factory=lambda: Tool("search")),
                sv.ChildSpec(id="calculator", factory=lambda: Tool("calculator")),
            ],
        ),
    ],
)


async def crash(ref: object) -> None:
    try:
        await ref.call("boom")  # type: ignore[attr-defined]
    except ValueError as exc:
        print(f"   caller got: {exc!r}")


async def main() -> None:
    async with sv.start(TREE) as sup:
        calculator = sup.ref("tools/calculator")
        print("started:\n" + sup.dump())

        print("\n1. calculator crashes -> tools restarts its children (one_for_all)")
        await crash(calculator)
        print("   same ref, new incarnation:", await calculator.call("ping", timeout=2))
        print(sup.dump())

        print("\n2. it crashes again within 10 s -> tools gives up, agent restarts tools")
        await crash(calculator)
        print("   same ref, after the escalation:", await calculator.call("ping", timeout=2))
        print(sup.dump())
        print("\nMermaid:\n" + sup.mermaid())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    # Show the library's warning/error events (crashes, escalations) as one line each.
    structlog.configure(
        processors=[
            lambda _logger, _name, event: {k: v for k, v in event.items() if k != "exc_info"},
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    anyio.run(main, backend=args.backend)
