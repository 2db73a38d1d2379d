"""The demo agent: a tool-calling agent on the official openai SDK, under scheduled chaos,
with every fault's recovery measured.

Run: python examples/demo_agent.py [--backend asyncio|trio] [--quick] [--duration S]
                                   [--config examples/demo_agent.toml] [--no-live]
                                   [--break-recovery] [--json PATH]

Everything is local: two mock OpenAI-compatible models on 127.0.0.1 in their scripted
tool-calling mode, a SQLite file, the MCP test server as a subprocess, each one a
service actor in the supervision tree `examples/demo_agent.toml` declares. Agents run
turns: the model decides which tools to call (MCP tools, a SQL query), the agent runs
them through their actors and sends the results back until the model answers; every
model request goes through the SDK's client on its service actor. Meanwhile the chaos
schedule fires every kind of fault (429s, 529s, latency, an outage, hangs, dropped
connections, broken streams, a capacity limit, a crashed actor, a killed MCP server).

It prints the dashboard's URL, shows every actor live, and ends with a report. It
exits 0 only if every invariant held: each fault recovered (healthy again, answering
for real) within the bound, the final health is healthy, turns kept completing,
every request was completed once and the routers agree, no call overran its deadline
beyond the event loop's measured lateness, and nothing was left running. With
`--break-recovery` crashed actors are never restarted, and the run fails.
"""

import sys

from demo.run import main

if __name__ == "__main__":
    sys.exit(main())
