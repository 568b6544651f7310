"""GET /healthz answers 200 while the store and the history answer, 503 when either does not;
any read that meets a database that does not answer is a 503 to retry, naming no host."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg.conninfo

import api
from nebula.store import PostgresStore
from nebula.sync import History


async def test_the_probe_answers_ok_when_the_store_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "store": True, "history": True, "problems": []}


async def test_the_probe_answers_503_when_the_store_is_gone(
    client: httpx.AsyncClient, store: PostgresStore
) -> None:
    store.close()

    response = await client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "store": False,
        "history": True,
        "problems": [],
    }


async def test_the_probe_answers_503_when_the_history_database_is_missing(
    store: PostgresStore, database: str, trigger: Any, secrets: Any
) -> None:
    runs = History(psycopg.conninfo.make_conninfo(database, dbname="nebula_no_such_database"))
    app = api.create_app(store=store, runs=runs, trigger=trigger, secrets=secrets)

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://nebula.test"
    ) as client:
        response = await client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "store": True,
        "history": False,
        "problems": [],
    }
    assert "nebula_no_such_database" not in response.text


async def test_a_read_that_meets_a_database_that_does_not_answer_is_a_503_to_retry(
    store: PostgresStore, database: str, trigger: Any, secrets: Any
) -> None:
    runs = History(psycopg.conninfo.make_conninfo(database, dbname="nebula_no_such_database"))
    app = api.create_app(store=store, runs=runs, trigger=trigger, secrets=secrets)

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://nebula.test"
    ) as client:
        response = await client.get("/api/v1/sync-runs")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "10"
    assert "nebula_no_such_database" not in response.text


async def test_a_runtime_with_a_problem_makes_the_probe_degraded_and_every_page_say_it(
    store: PostgresStore, runs: History, trigger: Any, secrets: Any
) -> None:
    # What the embedded runtime says while its LISTEN is down (issue 12.1).
    problems = ["not listening for changes: PostgreSQL does not answer"]
    app = api.create_app(
        store=store, runs=runs, trigger=trigger, secrets=secrets, problems=lambda: problems
    )

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://nebula.test"
    ) as client:
        health = await client.get("/healthz")
        page = await client.get("/")
        problems.clear()
        recovered = await client.get("/healthz")

    assert health.status_code == 503
    assert health.json() == {
        "status": "degraded",
        "store": True,
        "history": True,
        "problems": ["not listening for changes: PostgreSQL does not answer"],
    }
    assert "Degraded:" in page.text and "not listening for changes" in page.text
    assert recovered.status_code == 200 and recovered.json()["status"] == "ok"
