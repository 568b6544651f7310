"""GET /api/v1/sync-runs: the history, newest first, of every source or of one."""

from __future__ import annotations

import datetime
from typing import Any

import httpx

from nebula.sync import History

NOW = datetime.datetime.now(datetime.UTC)


def record(runs: History, source: str, minutes_ago: int, **fields: Any) -> None:
    started = NOW - datetime.timedelta(minutes=minutes_ago)
    runs.record(source, started=started, **fields)


async def test_runs_are_listed_newest_first_with_what_they_changed(
    client: httpx.AsyncClient, runs: History
) -> None:
    record(runs, "flux.homelab", 10, result="applied", revision="a" * 40, author="Ada",
           message="Add the upscale workflow", counts={"created": 1, "unchanged": 9})  # fmt: skip
    record(runs, "flux.homelab", 1, result="failed", revision="b" * 40, error="bad.yaml:1:1: x")

    response = await client.get("/api/v1/sync-runs")

    assert response.status_code == 200
    newest, oldest = response.json()
    assert (newest["revision"], newest["result"], newest["error"]) == (
        "b" * 40, "failed", "bad.yaml:1:1: x",
    )  # fmt: skip
    assert oldest["author"] == "Ada"
    assert oldest["message"] == "Add the upscale workflow"
    assert (oldest["created"], oldest["updated"], oldest["unchanged"]) == (1, 0, 9)
    assert datetime.datetime.fromisoformat(oldest["startedAt"]) < datetime.datetime.fromisoformat(
        oldest["finishedAt"]
    )


async def test_runs_can_be_narrowed_to_one_source_and_limited(
    client: httpx.AsyncClient, runs: History
) -> None:
    for minutes in (5, 4, 3):
        record(runs, "flux.homelab", minutes, result="applied")
    record(runs, "lab.other", 1, result="applied")

    one = await client.get("/api/v1/sync-runs", params={"source": "flux.homelab", "limit": 2})

    assert [run["source"] for run in one.json()] == ["flux.homelab", "flux.homelab"]


async def test_a_limit_out_of_range_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/sync-runs", params={"limit": 0})

    assert response.status_code == 422
