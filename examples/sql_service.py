"""A SQLite service actor: parameterised queries, a transaction, a malformed request
refused for its caller only, and a runaway query stopped at the caller's deadline.

Run: python examples/sql_service.py [--backend asyncio|trio]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import anyio

from actors import CallTimeout, InvalidRequest, QueryError, Service, ServiceConfig, open_actor
from actors.services.sql import Query, QueryResult, SQLiteClient, Transaction

RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = Service(
            "db",
            lambda: SQLiteClient("db", Path(folder) / "agent.db"),
            ServiceConfig.for_database(),
        )
        async with open_actor(db.actor(), name="db") as ref:
            await ref.call(Query("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT UNIQUE)"))
            await ref.call(Query("INSERT INTO notes (text) VALUES (?)", ["remember the milk"]))
            result = await ref.call(Query("SELECT id, text FROM notes"))
            assert isinstance(result, QueryResult)  # a Transaction's reply is a list of them
            print(f"rows: {result.rows}")

            try:
                await ref.call(
                    Transaction(
                        [
                            Query("INSERT INTO notes (text) VALUES (?)", ["new"]),
                            Query("INSERT INTO notes (text) VALUES (?)", ["remember the milk"]),
                        ]
                    )
                )
            except QueryError as exc:
                print(f"transaction rolled back: {exc}")
            count = await ref.call(Query("SELECT count(*) FROM notes", fetch="one"))
            assert isinstance(count, QueryResult)
            print(f"still {count.rows[0][0]} note(s)")

            try:
                await ref.call(Query("SELECT ?", [2**70]))  # SQLite integers are 64-bit
            except InvalidRequest as exc:
                print(f"refused, the actor carries on: {exc}")

            try:
                await ref.call(Query(RUNAWAY, fetch="one"), timeout=0.5)
            except CallTimeout:
                print("runaway query interrupted at its 0.5 s deadline")
            ok = await ref.call(Query("SELECT 'ok'", fetch="one"))
            assert isinstance(ok, QueryResult)
            print("next query:", ok.rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, backend=args.backend)
