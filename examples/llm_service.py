"""An LLM service actor under a supervisor, against the local mock OpenAI-compatible API.

Run: python examples/llm_service.py [--backend asyncio|trio]

Starts the mock server on 127.0.0.1 (no API key, no network), then shows a plain call, a
streamed call, a burst of 429s absorbed by retries (honouring retry-after-ms), and the
tokens-per-minute limit reconciled from the responses' usage.
"""

from __future__ import annotations

import argparse
import logging

import anyio
import attrs
import structlog

import supervisor as sv
from actors import RetryPolicy
from actors.services import Secret, Service, ServiceConfig
from actors.services.llm import ChatRequest, LLMClient
from actors.testing._mock_llm import Behaviour, serve_mock_llm


async def main() -> None:
    async with serve_mock_llm() as server:
        config = ServiceConfig.for_llm(requests_per_minute=600, tokens_per_minute=20_000)
        config = attrs.evolve(config, retry=RetryPolicy.for_llm(backoff_initial=0.05))
        llm = Service(
            "llm",
            lambda: LLMClient(
                "llm", server.base_url, model="mock-gpt", api_key=Secret("sk-local-demo")
            ),
            config,
        )
        tree = sv.SupervisorSpec(
            id="agent", children=[sv.ChildSpec(id="llm", factory=llm.actor, config=config.actor)]
        )
        async with sv.start(tree) as sup:
            ref = sup.ref("llm")

            reply = await ref.call(ChatRequest.user("Say hello"))
            print(f"reply: {reply.content!r} ({reply.usage.total_tokens} tokens)")

            chunks: list[str] = []
            reply = await ref.call(
                ChatRequest.user("Stream a story", stream=True, on_chunk=chunks.append)
            )
            print(f"streamed {len(chunks)} chunks: {reply.content!r}")

            server.control.script(
                Behaviour.rate_limited(retry_after=None, retry_after_ms=50, repeat=2)
            )
            reply = await ref.call(ChatRequest.user("Under rate limiting"))
            print(f"after two 429s: {reply.content!r}; attempts so far: {llm.stats.attempts}")

            assert llm.limits is not None
            tokens = llm.limits.metrics()
            print(f"limits: {tokens}")
            assert llm.breaker is not None
            print(f"breaker: {llm.breaker.state.value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    anyio.run(main, backend=args.backend)
