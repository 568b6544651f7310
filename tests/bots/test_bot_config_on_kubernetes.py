"""On k3s the bots follow their BotConfig in the Kubernetes API and report to PostgreSQL.

A real :class:`~bots.reloading.Reloader` with the Kubernetes feed (a watch on the one BotConfig)
over kmock's emulator served over HTTP (the operator tests' ``Emulator``, which stamps
``resourceVersion`` and bumps ``metadata.generation`` when a patch changes the spec), and its
reports in a real PostgreSQL as the operator reads them. The bot's ``apply`` is recorded: what
it would send to Discord is the Discord glue's, tested elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import socket
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import aiohttp.test_utils
import aiohttp.web
import kmock
import pytest
import ruamel.yaml

from bots import cli, reloading
from nebula import bot_reports, db, errors
from nebula.resources import GROUP, VERSION, ResourceKey
from nebula.resources.bot_config import BotConfig
from nebula.store import kubernetes as kubernetes_store
from tests.bots.conftest import BOTS
from tests.controllers import emulator

EXAMPLE = pathlib.Path(__file__).parent.parent.parent / "manifests" / "bots.yaml"
COLLECTION = f"/apis/{GROUP}/{VERSION}/namespaces/default/botconfigs"
T = TypeVar("T")


def _bot_config() -> dict[str, Any]:
    document: dict[str, Any] = ruamel.yaml.YAML(typ="safe").load(EXAMPLE.read_text())
    document["metadata"]["namespace"] = "default"
    return document


def _rate(changes_per_hour: int) -> dict[str, Any]:
    return {"spec": {"discord": {"rateLimit": {"changesPerHour": changes_per_hour}}}}


class Recorder:
    """The bot's part: records each BotConfig it is asked to apply (generation, rate limit)."""

    def __init__(self) -> None:
        self.applied: list[tuple[int | None, int]] = []

    async def __call__(self, config: BotConfig, generation: int | None) -> Sequence[str]:
        assert config.spec.discord is not None
        self.applied.append((generation, config.spec.discord.rate_limit.changes_per_hour))
        return []


async def _until(check: Callable[[], bool], *, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"not within {timeout} s"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def _running(
    api: Any, database: str, apply: Recorder, **feed: Any
) -> AsyncIterator[reloading.Reloader]:
    """A Discord bot's Reloader on the cluster, watching until the block ends."""
    reloader = reloading.Reloader(
        changes=reloading.KubernetesChanges(api, BOTS, bot="discord", **feed),
        store=kubernetes_store.KubernetesStore(api),
        reports=bot_reports.BotReportStore(database),
        key=BOTS,
        bot="discord",
        apply=apply,
        connected=lambda: True,
    )
    stop = asyncio.Event()
    watching = asyncio.create_task(reloader.watch(stop))
    try:
        await asyncio.wait_for(reloader.watching.wait(), timeout=5)
        yield reloader
    finally:
        stop.set()
        await asyncio.wait_for(watching, timeout=5)


def _reported(database: str) -> list[tuple[str, int | None, bool]]:
    return [
        (r.bot, r.applied_generation, r.connected)
        for r in bot_reports.BotReportStore(database).of(BOTS)
    ]


async def test_a_botconfig_in_the_cluster_is_applied_reported_and_followed_when_it_changes(
    k8s: emulator.Cluster, database: str
) -> None:
    db.migrate(database)
    k8s.create(_bot_config())
    apply = Recorder()
    with contextlib.closing(kubernetes_store.connect(k8s.url)) as api:
        # As `nebula bot discord --kubernetes` finds it: the only BotConfig in the cluster.
        assert reloading.find_bot_config(kubernetes_store.KubernetesStore(api)) == BOTS
        async with _running(api, database, apply) as reloader:
            assert apply.applied == [(1, 10)]
            assert _reported(database) == [("discord", 1, True)]

            # The operator writing the status (every report does) is no new generation.
            await asyncio.to_thread(k8s.patch, BOTS, {"status": {"appliedGeneration": 1}})
            # A new spec, as a sync applies it: the emulator bumps the generation to 2.
            started = asyncio.get_running_loop().time()
            await asyncio.to_thread(k8s.patch, BOTS, _rate(20))
            await _until(lambda: len(apply.applied) == 2)
            took = asyncio.get_running_loop().time() - started
            assert apply.applied == [(1, 10), (2, 20)]
            assert reloader.generation == 2
            await _until(lambda: _reported(database) == [("discord", 2, True)])
            assert took < 2.0

            # And again: the watch goes on after an event.
            await asyncio.to_thread(k8s.patch, BOTS, _rate(30))
            await _until(lambda: len(apply.applied) == 3)
    assert apply.applied == [(1, 10), (2, 20), (3, 30)]
    assert _reported(database) == [("discord", 3, True)]
    assert k8s.objects("BotConfig")[BOTS]["metadata"]["generation"] == 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _QuickStop(aiohttp.test_utils.RawTestServer):
    """aiohttp's test server, waiting 0.1 s (not 60) for open responses (watches) when closed."""

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> aiohttp.web.ServerRunner:
        server = aiohttp.web.Server(self._handler, loop=self._loop, debug=debug, **kwargs)
        return aiohttp.web.ServerRunner(server, debug=debug, shutdown_timeout=0.1, **kwargs)


class Restartable:
    """The operator tests' emulator on a fixed port, whose server can stop and start again
    with the same objects: an API server that restarts."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kmock", daemon=True)
        self._thread.start()
        self._emulator_stack = contextlib.AsyncExitStack()
        self._server_stack = contextlib.AsyncExitStack()
        self.emulator = self._run(self._emulator_stack.enter_async_context(emulator.Emulator()))
        emulator.declare(self.emulator)
        self.port = _free_port()
        self.cluster = emulator.Cluster(self.emulator, self._loop, f"http://127.0.0.1:{self.port}")

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    def start(self) -> None:
        """Serves the emulator on its port."""
        server = kmock.Server(self.emulator, port=self.port, server_cls=_QuickStop)
        self._run(self._server_stack.enter_async_context(server))

    def stop(self) -> None:
        """Closes the server: open watches break, new requests are refused."""
        self._run(self._server_stack.aclose())

    def close(self) -> None:
        self.stop()
        self._run(self._emulator_stack.aclose())
        self.cluster.api.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture
def restartable() -> Iterator[Restartable]:
    served = Restartable()
    served.start()
    try:
        yield served
    finally:
        served.close()


async def test_a_broken_watch_is_followed_again_and_a_change_made_meanwhile_applied(
    restartable: Restartable, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    db.migrate(database)
    cluster = restartable.cluster
    cluster.create(_bot_config())
    apply = Recorder()
    caplog.set_level(logging.WARNING, logger="nebula.bots")
    with contextlib.closing(kubernetes_store.connect(cluster.url)) as api:
        async with _running(api, database, apply, backoff=0.05, max_backoff=0.2) as reloader:
            assert apply.applied == [(1, 10)]
            lists_before = _lists(cluster)

            # The API server goes away: the watch breaks and the feed keeps trying.
            await asyncio.to_thread(restartable.stop)
            await _until(lambda: "lost the watch" in caplog.text)
            # Meanwhile the BotConfig changes, with no event anyone could watch.
            await asyncio.to_thread(
                cluster.call,
                lambda e: e.objects[f"{GROUP}/{VERSION}/botconfigs", "default", BOTS.name].patch(
                    {**_rate(20), "metadata": {"generation": 2}}
                ),
            )
            await asyncio.sleep(0.3)
            assert apply.applied == [(1, 10)]

            # It comes back: the feed lists again, and the change made meanwhile is applied.
            await asyncio.to_thread(restartable.start)
            await _until(lambda: len(apply.applied) == 2)
            assert apply.applied == [(1, 10), (2, 20)]
            await _until(lambda: _reported(database) == [("discord", 2, True)])

            # It listed again before watching again.
            assert _lists(cluster) == lists_before + 1

            # And it watches again: the next change arrives as an event.
            await asyncio.to_thread(cluster.patch, BOTS, _rate(30))
            await _until(lambda: len(apply.applied) == 3)
            assert reloader.generation == 3
    assert apply.applied == [(1, 10), (2, 20), (3, 30)]


def _lists(cluster: emulator.Cluster) -> int:
    """How many times the BotConfig was listed (not watched)."""

    def count(e: emulator.Emulator) -> int:
        return sum(
            1
            for r in e
            if r.url.path == COLLECTION
            and r.action == kmock.action.LIST
            and r.params.get("watch") != "true"
        )

    return cluster.call(count)


async def test_the_cluster_bot_opens_changes_for_the_gitsource_that_applied_its_botconfig(
    k8s: emulator.Cluster, database: str, tmp_path: pathlib.Path
) -> None:
    db.migrate(database)
    document = _bot_config()
    document["metadata"]["labels"] = {"nebula.dev/source": "default.homelab"}
    k8s.create(document)
    k8s.create(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "GitSource",
            "metadata": {"name": "homelab", "namespace": "default"},
            "spec": {"url": "https://git.example/homelab.git", "ref": {"branch": "main"}},
        }
    )
    with contextlib.closing(kubernetes_store.connect(k8s.url)) as api:
        state = cli.cluster_state(api, database, state_dir=tmp_path)
        changes = state.changes(BOTS)
        assert changes.source_id == "default.homelab"
        assert isinstance(state.feed(BOTS, "discord"), reloading.KubernetesChanges)
        named = cli.cluster_state(
            api,
            database,
            state_dir=tmp_path,
            changes_source=ResourceKey("GitSource", "default", "missing"),
        )
        with pytest.raises(errors.ResourceNotFound):
            named.changes(BOTS)
