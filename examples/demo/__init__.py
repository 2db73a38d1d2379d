"""The demo agent, one idea per module (run it with ``python examples/demo_agent.py``).

- `settings`: the demo's TOML tables (load, deadlines, probes, the chaos schedule);
- `stack`: the mock services, the supervision tree, health, routers and dashboard;
- `agent`: the tool-calling agent's turns, each request counted as issued;
- `ledger`: requests counted where they are issued and where they complete;
- `chaos`: the faults, injected and stopped on schedule;
- `recovery`: after each fault, when its service was healthy and answering again;
- `lateness`: the event loop's own lateness, to explain (or not) a late answer;
- `view`: the live view; `report`: the invariants and the exit code; `run`: one run.
"""
