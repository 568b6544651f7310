"""Benchmark: syncing 10,000 resources from git into PostgreSQL (``python bench/sync.py``).

Reports, for a generated homelab of about 10,000 resources in a bare repository:
- a cold sync (empty database and cache): fetch, parse, validate, plan, write;
- a re-sync of the same revision: time, and store writes counted by LISTEN/NOTIFY (aim: 0);
- a commit that changes one file: time, and the objects written (aim: exactly that file's);
- push-to-applied through the webhook: a commit pushed, a signed GitHub push event POSTed to
  ``nebula up``'s web app, until the store holds the change (the embedded runtime, for real).
Each figure is the GitSource reconcile as the runtimes run it (status and history included).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import hmac
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import generate

from controllers import git_source
from nebula import db
from nebula.resources import ResourceKey
from nebula.resources.git_source import GitSource, GitSourceStatus
from nebula.secrets import EnvironmentSecrets
from nebula.sources import Mirror
from nebula.store import PostgresStore, postgres
from nebula.sync import FileCache, History

NOW = datetime.datetime.now(datetime.UTC)


def git(*args: str, cwd: pathlib.Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example",
           "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example"}  # fmt: skip
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class Bench:
    """A generated repository, a fresh database, and the GitSource reconciler over them."""

    def __init__(self, root: pathlib.Path, conninfo: str, count: int) -> None:
        self.work, self.bare = root / "work", root / "remote.git"
        git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare), cwd=root)
        git("clone", "--quiet", str(self.bare), str(self.work), cwd=root)
        git("checkout", "--quiet", "-b", "main", cwd=self.work)
        self.count = generate.generate(self.work / "manifests", count)
        self.push("generated homelab")
        self.conninfo = conninfo
        self.store = PostgresStore(conninfo).open()
        self.runs = History(conninfo)
        self.mirror = Mirror(root / "mirror.git")
        self.cache = FileCache()
        self.status: GitSourceStatus | None = None
        self.source = GitSource.model_validate(
            {
                "apiVersion": "nebula.dev/v1alpha1",
                "kind": "GitSource",
                "metadata": {"name": "bench", "namespace": "default", "generation": 1},
                "spec": {"url": f"file://{self.bare}", "path": "manifests"},
            }
        )
        self.listener = postgres.listen(conninfo, timeout=0.3)
        next(self.listener)

    def push(self, message: str) -> None:
        git("add", "--all", cwd=self.work)
        git("commit", "--quiet", "-m", message, cwd=self.work)
        git("push", "--quiet", "origin", "main", cwd=self.work)

    def reconcile(self) -> float:
        start = time.perf_counter()
        outcome = git_source.reconcile(
            self.source, mirror=self.mirror, cache=self.cache, store=self.store, runs=self.runs,
            secrets=EnvironmentSecrets({}), now=NOW, previous=self.status,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        ready = next(c for c in outcome.status.conditions if c.type == "Ready")
        assert ready.status == "True", ready.message
        self.status = outcome.status
        return elapsed

    def writes(self) -> int:
        count = 0
        for notification in self.listener:
            if notification is None:
                return count
            count += 1
        return count


def webhook_latency(bench: Bench, runs: int) -> list[float]:
    """Push → signed webhook → applied, through ``nebula up``'s app and embedded runtime."""
    import httpx

    from api import app as api_app
    from controllers import git_source, local
    from nebula import db

    secret = "bench-hmac"
    # The same source, now stored so that the runtime runs it, with a webhook secret.
    spec = {
        "url": f"file://{bench.bare}", "path": "manifests", "interval": "1h",
        "webhookSecretRef": {"name": "bench-webhook", "key": "hmac"},
    }  # fmt: skip
    bench.store.put(
        {"apiVersion": "nebula.dev/v1alpha1", "kind": "GitSource",
         "metadata": {"name": "bench", "namespace": "default"}, "spec": spec}
    )  # fmt: skip
    secrets = EnvironmentSecrets({"NEBULA_SECRET_BENCH_WEBHOOK_HMAC": secret})
    listener = db.Listener(bench.conninfo)
    state = local.LocalState(
        bench.conninfo, bench.store, bench.runs, secrets, bench.work.parent, listener
    )
    timings: list[float] = []

    async def main() -> None:
        runtime = local.runtime(state, only=(git_source.GitSourceKind,))
        app = api_app.create_app(
            store=bench.store, runs=bench.runs, trigger=runtime, secrets=secrets
        )
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        await runtime.wait_ready()
        while runtime.reconciles < 1:  # its first sync: a cold cache, nothing to write
            await asyncio.sleep(0.05)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://nebula") as client:
            for index in range(runs):
                # The first "size:" of the first file is model-0's (nodes and services have none).
                target = ResourceKey("NebulaModel", "homelab", "model-0")
                size = f"{5 + index}Gi"
                models = bench.work / "manifests" / "part-0000.yaml"
                models.write_text(
                    re.sub(r"size: \S+", f"size: {size}", models.read_text(), count=1)
                )
                await asyncio.to_thread(bench.push, f"resize {index}")
                repository = {"clone_url": f"file://{bench.bare}", "html_url": "", "ssh_url": ""}
                body = json.dumps(
                    {"ref": "refs/heads/main", "after": "0" * 40, "repository": repository}
                ).encode()
                signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                start = time.perf_counter()
                response = await client.post(
                    "/hooks/git", content=body,
                    headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": signature,
                             "Content-Type": "application/json"},
                )  # fmt: skip
                assert response.status_code == 202, response.text
                while True:
                    stored = await asyncio.to_thread(bench.store.get, target)
                    if stored and stored.document["spec"].get("size") == size:
                        break
                    await asyncio.sleep(0.005)
                timings.append(time.perf_counter() - start)
        stop.set()
        await task

    try:
        asyncio.run(main())
    finally:
        listener.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        db.embedded_postgres(pathlib.Path(tmp) / "state") as postgres,
    ):
        url = postgres.uri
        db.migrate(url)
        bench = Bench(pathlib.Path(tmp), url, args.count)
        print(f"{bench.count} resources in {len(list((bench.work / 'manifests').iterdir()))} files")

        cold = bench.reconcile()
        print(f"cold sync: {cold:.2f} s, {bench.writes()} objects written")

        again, writes = [], []
        for _ in range(args.runs):
            again.append(bench.reconcile())
            writes.append(bench.writes())
        print(f"re-sync, same revision: median {statistics.median(again) * 1000:.0f} ms "
              f"(best {min(again) * 1000:.0f} ms), store writes {max(writes)}")  # fmt: skip

        one, written = [], []
        part = bench.work / "manifests" / "part-0001.yaml"
        for index in range(args.runs):
            text = part.read_text()
            part.write_text(text.replace("replicas: 1", "replicas: 2", 1) if index % 2 == 0
                            else text.replace("replicas: 2", "replicas: 1", 1))  # fmt: skip
            bench.push(f"scale {index}")
            one.append(bench.reconcile())
            written.append(bench.writes())
        print(f"one-file change (1 object): median {statistics.median(one) * 1000:.0f} ms "
              f"(best {min(one) * 1000:.0f} ms), written {sorted(set(written))}")  # fmt: skip

        latency = webhook_latency(bench, args.runs)
        print(f"push-to-applied via webhook: median {statistics.median(latency) * 1000:.0f} ms "
              f"(best {min(latency) * 1000:.0f} ms)")  # fmt: skip


if __name__ == "__main__":
    main()
