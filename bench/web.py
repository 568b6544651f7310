"""Benchmark: the web app's answer times with 1,000 resources (``python bench/web.py``).

Issue 5 asks that the webhook and the UI pages (the overview, a kind, an object, the changes
queue and a change) answer in under 50 ms at p99 with 1,000 resources. This builds that homelab
for real and measures what a browser or a git provider sees:

- an embedded PostgreSQL, migrated; a generated homelab (``generate.py``) of about 1,000
  resources pushed to a bare repository and synced by the GitSource reconciler, as
  ``nebula up`` does; then a status on every object as its controller would write it (nodes
  through the NebulaNode reconciler from a heartbeat; a few objects not Ready or Stalled), a
  heartbeat per node, a sync history, and 20 change requests waiting (one merged);
- the app of :func:`api.app.create_app` (open: no users), served by uvicorn on 127.0.0.1 in a
  thread of this process, with the collector set as the commands set it
  (:func:`api.app.steady_collector`);
- a client in another process (so it never competes for this one's GIL) with one keep-alive
  ``httpx.Client`` asking for gzip as browsers do, timing each request from send to the last
  byte. The endpoints are asked in turn, round after round, so machine noise spreads evenly.

The sync trigger is a stand-in that only counts (the ``SyncTrigger`` seam): the webhook is
measured up to its answer, not the sync it asks for (``bench/sync.py`` measures that).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import hashlib
import hmac
import json
import multiprocessing
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import generate
import httpx
import uvicorn

import api
from controllers import git_source, nebula_node
from nebula import db, heartbeats
from nebula.changes import ChangeService, Person, intents
from nebula.resources import API_VERSION, GitSource, NebulaNode, ResourceKey, conditions
from nebula.resources.nebula_node import Hardware
from nebula.secrets import EnvironmentSecrets, environment_variable
from nebula.sources import Mirror
from nebula.store import PostgresStore
from nebula.sync import FileCache, History

SECRET = "bench-webhook-hmac"
CHANGES = 20
"""Change requests waiting in the queue the changes page lists."""
BUDGET_MS = 50.0
"""Issue 5: every page and the webhook answer within this at p99, with 1,000 resources."""
NOW = datetime.datetime.now(datetime.UTC)
Request = tuple[str, str, str, bytes | None, dict[str, str]]  # label, method, path, body, headers


def git(*args: str, cwd: pathlib.Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example",
           "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example"}  # fmt: skip
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class CountingTrigger:
    """A :class:`nebula.sync.SyncTrigger` that counts what the webhook asked for."""

    def __init__(self) -> None:
        self.requested = 0

    def request(self, source: ResourceKey) -> None:
        self.requested += 1


# --- The homelab -----------------------------------------------------------------------------


def dumped(status: conditions.Status) -> dict[str, Any]:
    """A status as controllers store it: camelCase JSON, unset fields left out."""
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def repository(root: pathlib.Path, count: int) -> tuple[pathlib.Path, int]:
    """A bare repository holding about ``count`` generated resources under ``manifests/``."""
    bare, work = root / "remote.git", root / "work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=root)
    git("clone", "--quiet", str(bare), str(work), cwd=root)
    git("checkout", "--quiet", "-b", "main", cwd=work)
    written = generate.generate(work / "manifests", count)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "Generated homelab", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    return bare, written


def sync(root: pathlib.Path, bare: pathlib.Path, store: PostgresStore, runs: History) -> GitSource:
    """Stores the GitSource (with a webhook secret) and syncs it once, status written."""
    spec = {
        "url": f"file://{bare}",
        "path": "manifests",
        "ref": {"branch": "main"},
        "webhookSecretRef": {"name": "github-webhook", "key": "hmac"},
    }
    metadata = {"name": "homelab", "namespace": "flux"}
    document = {"apiVersion": API_VERSION, "kind": "GitSource", "metadata": metadata, "spec": spec}
    key = store.put(document)
    stored = store.get(key)
    assert stored is not None
    source = GitSource.model_validate(
        {**document, "metadata": {**metadata, "generation": stored.generation}}
    )
    outcome = git_source.reconcile(
        source, mirror=Mirror(root / "mirror.git"), cache=FileCache(), store=store, runs=runs,
        secrets=EnvironmentSecrets({}), now=NOW, previous=None,
    )  # fmt: skip
    ready = conditions.find(outcome.status.conditions, conditions.READY)
    assert ready is not None and ready.status == "True", ready
    store.write_status(key, dumped(outcome.status))
    return source


def changes(root: pathlib.Path, url: str, source: GitSource, count: int) -> ChangeService:
    """A change service for the source with ``count`` changes waiting (each scales a service,
    a commit on its own branch, as the CLI or a bot opens them) and one merged."""
    service = ChangeService(conninfo=url, source=source, mirror=Mirror(root / "changes.git"))
    asker = Person("Bench", "bench@example.invalid")
    opened = [
        service.open(
            intents.ScaleService(namespace="homelab", service=f"svc-{n}", replicas=2 + n % 5),
            requester=asker,
            origin="cli",
        )
        for n in range(count + 1)
    ]
    service.approve(opened[0].id, approver=asker)
    return service


def hardware(index: int) -> Hardware:
    """A GPU box as its agent reports it."""
    return Hardware.model_validate(
        {"cpu": {"model": "AMD Ryzen 9 5950X", "cores": 32, "physicalCores": 16},
         "memory": "125.7Gi", "os": "Ubuntu 24.04.1 LTS", "kernel": "6.8.0-45-generic",
         "arch": "amd64", "addresses": [f"10.0.{index}.{index + 1}", f"100.64.0.{index + 1}"],
         "gpus": [{"vendor": "nvidia", "model": "NVIDIA GeForce RTX 3090", "vramTotal": "24Gi",
                   "vramUsed": "6.2Gi", "driver": "550.107.02", "cudaVersion": "12.4",
                   "utilization": 12, "temperature": 48}],
         "disks": [{"mount": "/", "total": "931Gi", "free": "402Gi"}],
         "endpoints": {"ollama": True, "comfyui": index % 2 == 0, "docker": True}}
    )  # fmt: skip


def statuses(store: PostgresStore, beats: heartbeats.HeartbeatStore) -> dict[str, int]:
    """A status on every object, as its controller writes it; returns how many per kind.

    One object in 40 is not Ready and one in 200 is Stalled, so the overview has trouble to show.
    """
    counts: dict[str, int] = {}
    for stored in store.list("NebulaNode"):
        index = int(stored.key.name.rsplit("-", 1)[1])
        beat = heartbeats.Heartbeat(
            node=stored.key.name, hostname=f"{stored.key.name}-host", agent_version="0.4.1",
            interval_seconds=15, hardware=hardware(index), received_at=NOW,
        )  # fmt: skip
        beats.record(beat)
        node = NebulaNode.model_validate({**stored.document, "metadata": {
            **stored.document["metadata"], "generation": stored.generation}})  # fmt: skip
        reported = nebula_node.reconcile(node, heartbeat=beat, now=NOW, previous=None).status
        store.write_status(stored.key, dumped(reported))
        counts["NebulaNode"] = counts.get("NebulaNode", 0) + 1
    extra: dict[str, dict[str, Any]] = {
        "NebulaService": {"readyReplicas": 1, "url": "https://app.example.com"},
        "NebulaModel": {"presentOn": 1},
        "ComfyWorkflow": {"lastRunTime": NOW.isoformat()},
        "Pipeline": {"lastRunTime": NOW.isoformat(), "lastRunResult": "Succeeded"},
    }
    for kind, fields in extra.items():
        for index, stored in enumerate(store.list(kind)):
            ready: conditions.ConditionStatus = "True"
            reason, message = "Ready", f"{kind} is as declared"
            stalled = index % 200 == 7
            if stalled:
                ready, reason, message = "False", "Invalid", "spec.placement: no node fits"
            elif index % 40 == 3:
                ready, reason, message = "False", "NotReady", "health check failed: 503"
            found: list[conditions.Condition] = []
            for type_, holds in ((conditions.READY, ready), (conditions.STALLED, "True")):
                if type_ == conditions.READY or stalled:
                    found = conditions.set_condition(
                        found, type_=type_, status=holds, reason=reason, message=message, now=NOW
                    )
            status = conditions.Status(conditions=found, observed_generation=stored.generation)
            store.write_status(stored.key, {**dumped(status), **fields})
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def history(runs: History, revision: str) -> None:
    """Fourteen more syncs in the history, so the overview lists its usual fifteen."""
    for index in range(14):
        runs.record(
            "flux.homelab", started=NOW - datetime.timedelta(minutes=15 * (index + 1)),
            result="failed" if index == 3 else "applied", revision=revision,
            author="Ada <ada@example.com>", message=f"Scale svc-{index} up\n\nBusy week.",
            counts={"created": 0, "updated": 1, "pruned": 0, "unchanged": 999},
            error="part-0003.yaml:12:5: spec.replicas: must be at most 64" if index == 3 else None,
        )  # fmt: skip


# --- Serving and measuring -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serves ``app`` with uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off", access_log=False)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def measure(base: str, requests: list[Request], warmup: int, rounds: int) -> dict[str, Any]:
    """In a client process: each request ``rounds`` times in turn; times in s, sizes in bytes."""
    times: dict[str, list[float]] = {label: [] for label, *_ in requests}
    sizes: dict[str, int] = {}
    with httpx.Client(base_url=base, headers={"Accept-Encoding": "gzip"}, timeout=30) as client:
        for round_ in range(warmup + rounds):
            for label, method, path, body, headers in requests:
                start = time.perf_counter()
                with client.stream(method, path, content=body, headers=headers) as response:
                    wire = sum(len(chunk) for chunk in response.iter_raw())
                elapsed = time.perf_counter() - start
                assert response.status_code in (200, 202), (label, response.status_code)
                if round_ >= warmup:
                    times[label].append(elapsed)
                sizes[label] = wire
    return {"times": times, "sizes": sizes}


def push_event(bare: pathlib.Path) -> tuple[bytes, dict[str, str]]:
    """A GitHub push of ``main`` to the benchmark's repository, signed with its secret."""
    repo = {"clone_url": f"file://{bare}", "html_url": "", "ssh_url": "", "full_name": "lab/home"}
    body = json.dumps({"ref": "refs/heads/main", "after": "a" * 40, "repository": repo}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "bench",
               "X-Hub-Signature-256": signature, "Content-Type": "application/json"}  # fmt: skip
    return body, headers


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=1000, help="resources to generate")
    parser.add_argument("--requests", type=int, default=500, help="measured per endpoint")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured rounds first")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        db.embedded_postgres(pathlib.Path(tmp) / "state") as postgres,
    ):
        url = postgres.uri
        root = pathlib.Path(tmp)
        db.migrate(url)
        bare, written = repository(root, args.count)
        with PostgresStore(url) as store:
            runs = History(url)
            beats = heartbeats.HeartbeatStore(url)
            started = time.perf_counter()
            source = sync(root, bare, store, runs)
            service = changes(root, url, source, CHANGES)
            counts = statuses(store, beats)
            history(runs, git("rev-parse", "HEAD", cwd=root / "work"))
            by_kind = ", ".join(f"{n} {k}" for k, n in counts.items())
            took = time.perf_counter() - started
            print(f"{written + 1} resources ({by_kind}, 1 GitSource), synced in {took:.1f} s")
            secrets = EnvironmentSecrets({environment_variable("github-webhook", "hmac"): SECRET})
            trigger = CountingTrigger()
            app = api.create_app(store=store, runs=runs, trigger=trigger, secrets=secrets,
                                 heartbeats=beats, changes=service)  # fmt: skip
            waiting = service.store.list(states=["open"])[0].id
            body, signed = push_event(bare)
            node = store.list("NebulaNode")[0].key.name
            model = store.list("NebulaModel")[0].key
            requests: list[Request] = [
                ("GET /  (overview)", "GET", "/", None, {}),
                ("GET /kinds/NebulaModel", "GET", "/kinds/NebulaModel", None, {}),
                (f"GET /kinds/NebulaNode/{node}", "GET", f"/kinds/NebulaNode/{node}", None, {}),
                (f"GET /kinds/NebulaModel/{model.namespace}/{model.name}", "GET",
                 f"/kinds/NebulaModel/{model.namespace}/{model.name}", None, {}),
                ("GET /api/v1/resources", "GET", "/api/v1/resources", None, {}),
                (f"GET /changes  ({CHANGES} waiting)", "GET", "/changes", None, {}),
                (f"GET /changes/{waiting}", "GET", f"/changes/{waiting}", None, {}),
                ("GET /healthz", "GET", "/healthz", None, {}),
                ("POST /hooks/git (signed push)", "POST", "/hooks/git", body, signed),
            ]  # fmt: skip
            # The client in another process: its parsing never takes the server's GIL.
            spawn = multiprocessing.get_context("spawn")
            load_before = os.getloadavg()[0]
            api.app.steady_collector()  # as `nebula up` and `nebula serve` do before serving
            with (
                serving(app) as base,
                concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool,
            ):
                result = pool.submit(measure, base, requests, args.warmup, args.requests).result()
            assert trigger.requested == args.warmup + args.requests, trigger.requested
            load_after = os.getloadavg()[0]
    load = f"load average {load_before:.2f} before, {load_after:.2f} after"
    print(f"{args.requests} requests per endpoint after {args.warmup} warm-up rounds, in turn, "
          f"one keep-alive connection, gzip; {os.cpu_count()} CPU cores shared by server, "
          f"PostgreSQL and client; {load}")  # fmt: skip
    width = max(len(label) for label, *_ in requests)
    head = f"{'p50':>7}  {'p95':>7}  {'p99':>7}  {'max':>7}  {'wire':>8}  p99 < {BUDGET_MS:.0f} ms"
    print(f"{'endpoint':<{width}}  {head}")
    for label, *_ in requests:
        times = [t * 1000 for t in result["times"][label]]
        p50, p95, p99 = statistics.median(times), percentile(times, 0.95), percentile(times, 0.99)
        wire = result["sizes"][label] / 1024
        verdict = "yes" if p99 < BUDGET_MS else "NO"
        figures = f"{p50:7.1f}  {p95:7.1f}  {p99:7.1f}  {max(times):7.1f}  {wire:6.1f}Ki  {verdict}"
        print(f"{label:<{width}}  {figures}")
    print("times in ms, from sending the request to its last byte; wire: the gzipped body")


if __name__ == "__main__":
    main()
