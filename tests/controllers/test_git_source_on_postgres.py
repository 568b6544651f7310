"""The GitSource reconciler against the PostgreSQL store: from a git push to applied resources.

The issue's scenarios on the embedded runtime's store: real bare repositories, a real
PostgreSQL (LISTEN/NOTIFY counts every row the sync writes), the real sync history.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import itertools
import pathlib
from collections.abc import Iterator

import psycopg
import psycopg.conninfo
import pytest

from controllers import git_source, reconciling
from nebula import bot_reports, db, heartbeats
from nebula.changes import ChangeStore
from nebula.resources import ResourceKey, conditions
from nebula.resources.git_source import GitSource, GitSourceStatus
from nebula.secrets import EnvironmentSecrets
from nebula.sources import Mirror
from nebula.store import PostgresStore, postgres
from nebula.sync import FileCache, History
from tests.conftest import GitRemote, RecordingSink

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)
EXAMPLE_COUNT = 26


class Harness:
    """A GitSource and everything its reconciler needs, and the notifications it caused."""

    def __init__(self, *, conninfo: str, remote: GitRemote, tmp: pathlib.Path) -> None:
        self.conninfo = conninfo
        self.store = PostgresStore(conninfo).open()
        self.runs = History(conninfo)
        self.mirror = Mirror(tmp / "mirror.git")
        self.cache = FileCache()
        self.remote = remote
        self.status: GitSourceStatus | None = None
        self.source = GitSource.model_validate(
            {
                "apiVersion": "nebula.dev/v1alpha1",
                "kind": "GitSource",
                "metadata": {"name": "homelab", "namespace": "default", "generation": 1},
                "spec": {"url": remote.url, "path": "manifests", "interval": "1m"},
            }
        )
        self._listener = postgres.listen(conninfo, timeout=0.2)
        next(self._listener)  # LISTEN is in place before anything is written

    def reconcile(
        self,
        *,
        runs: History | None = None,
        changes: ChangeStore | None = None,
        progress: reconciling.Progress | None = None,
    ) -> reconciling.Result[GitSourceStatus]:
        outcome = git_source.reconcile(
            self.source,
            mirror=self.mirror,
            cache=self.cache,
            store=self.store,
            runs=runs or self.runs,
            secrets=EnvironmentSecrets({}),
            changes=changes,
            now=NOW,
            previous=self.status,
            progress=progress,
        )
        self.status = outcome.status
        return outcome

    def writes(self) -> list[postgres.Notification]:
        """The rows written since the last call, as announced by the database."""
        found = []
        for notification in self._listener:
            if notification is None:
                return found
            found.append(notification)
        return found

    def ready(self) -> conditions.Condition | None:
        return conditions.find(self.status.conditions if self.status else [], conditions.READY)

    def close(self) -> None:
        self._listener.close()
        self.store.close()


@pytest.fixture
def harness(database: str, homelab_remote: GitRemote, tmp_path: pathlib.Path) -> Iterator[Harness]:
    db.migrate(database)
    made = Harness(conninfo=database, remote=homelab_remote, tmp=tmp_path)
    yield made
    made.close()


def test_the_first_sync_applies_every_example_resource(harness: Harness) -> None:
    outcome = harness.reconcile()

    assert len(harness.writes()) == EXAMPLE_COUNT
    assert len(harness.store.list("NebulaNode")) == 3
    ready = harness.ready()
    assert ready is not None and (ready.status, ready.reason) == ("True", git_source.APPLIED)
    assert "26 created" in ready.message
    assert [event.type for event in outcome.events] == ["Normal"]
    assert harness.status is not None and harness.status.resources == EXAMPLE_COUNT
    [run] = harness.runs.latest("default.homelab")
    assert (run.result, run.created, run.author) == (
        "applied",
        26,
        "Ada Admin <ada@homelab.example>",
    )


def test_an_unchanged_revision_writes_nothing_and_stays_silent(harness: Harness) -> None:
    before = harness.reconcile().status
    harness.writes()

    outcome = harness.reconcile()

    assert harness.writes() == []
    assert outcome.events == ()
    assert outcome.status == before
    assert [run.result for run in harness.runs.latest("default.homelab")] == ["applied"]


def test_a_one_file_change_writes_exactly_the_changed_objects(harness: Harness) -> None:
    harness.reconcile()
    harness.writes()
    models = harness.remote.read("manifests/models.yaml")
    harness.remote.write("manifests/models.yaml", models.replace("size: 4.9G", "size: 5G", 1))
    harness.remote.commit("llama3.1:8b is a little larger")

    harness.reconcile()

    [write] = harness.writes()
    assert (write.key, write.op) == (ResourceKey("NebulaModel", "default", "llama3-1-8b"), "update")
    stored = harness.store.get(write.key)
    assert stored is not None and stored.generation == 2
    assert stored.document["spec"]["size"] == "5G"


def test_deleting_a_file_prunes_exactly_its_objects(harness: Harness) -> None:
    harness.reconcile()
    harness.writes()
    harness.remote.remove("manifests/workflows/upscale.yaml")
    harness.remote.commit("No more upscaling")

    harness.reconcile()

    [write] = harness.writes()
    assert (write.key, write.op) == (ResourceKey("ComfyWorkflow", "default", "upscale"), "delete")
    assert len(harness.store.list("ComfyWorkflow")) == 2


def test_a_bad_file_applies_nothing_and_stalls_naming_its_line(harness: Harness) -> None:
    first = harness.reconcile()
    applied = first.status.last_applied_revision
    harness.writes()
    # One good change and one bad file in the same commit: neither may land.
    models = harness.remote.read("manifests/models.yaml")
    harness.remote.write("manifests/models.yaml", models.replace("size: 4.9G", "size: lots", 1))
    nodes = harness.remote.read("manifests/nodes.yaml")
    harness.remote.write("manifests/nodes.yaml", nodes.replace("role: ai", "role: worker", 1))
    bad = harness.remote.commit("Oops")

    outcome = harness.reconcile()

    assert harness.writes() == []
    ready = harness.ready()
    assert ready is not None and (ready.status, ready.reason) == ("False", "ValidationFailed")
    assert "manifests/models.yaml:18:3: spec.size: invalid quantity 'lots'" in ready.message
    stalled = conditions.find(outcome.status.conditions, conditions.STALLED)
    assert stalled is not None and stalled.status == "True"
    assert outcome.status.last_applied_revision == applied
    assert outcome.status.last_attempted_revision == bad
    assert outcome.status.observed_generation == 1
    assert [event.type for event in outcome.events] == ["Warning"]


def test_the_next_good_commit_recovers(harness: Harness) -> None:
    harness.reconcile()
    models = harness.remote.read("manifests/models.yaml")
    harness.remote.write("manifests/models.yaml", models.replace("size: 4.9G", "size: lots", 1))
    harness.remote.commit("Oops")
    harness.reconcile()
    harness.writes()
    harness.remote.write("manifests/models.yaml", models.replace("size: 4.9G", "size: 5G", 1))
    fixed = harness.remote.commit("Fixed")

    outcome = harness.reconcile()

    assert len(harness.writes()) == 1
    ready = harness.ready()
    assert ready is not None and ready.status == "True"
    assert conditions.find(outcome.status.conditions, conditions.STALLED) is None
    assert outcome.status.last_applied_revision == fixed


def test_objects_made_by_hand_are_never_pruned_and_other_sources_are_not_taken_over(
    harness: Harness,
) -> None:
    by_hand = {
        "apiVersion": "nebula.dev/v1alpha1",
        "kind": "NebulaModel",
        "metadata": {"name": "my-experiment", "namespace": "default"},
        "spec": {"provider": "ollama", "model": "phi3:mini"},
    }
    harness.store.put(by_hand)
    harness.reconcile()
    assert harness.store.get(ResourceKey("NebulaModel", "default", "my-experiment")) is not None

    other = GitSource.model_validate(
        {
            **harness.source.model_dump(by_alias=True),
            "metadata": {"name": "other", "namespace": "default"},
        }
    )
    outcome = git_source.reconcile(
        other,
        mirror=Mirror(harness.mirror._path.parent / "other.git"),
        cache=FileCache(),
        store=harness.store,
        runs=harness.runs,
        secrets=EnvironmentSecrets({}),
        now=NOW,
        previous=None,
    )

    ready = conditions.find(outcome.status.conditions, conditions.READY)
    assert ready is not None and ready.reason == git_source.APPLY_FAILED
    assert "belong to another GitSource" in ready.message and "(default.homelab)" in ready.message


def test_two_concurrent_syncs_of_one_source_never_interleave(harness: Harness) -> None:
    def sync_once(index: int) -> None:
        git_source.reconcile(
            harness.source,
            mirror=Mirror(harness.mirror._path.parent / f"mirror-{index}.git"),
            cache=FileCache(),
            store=harness.store,
            runs=harness.runs,
            secrets=EnvironmentSecrets({}),
            now=NOW,
            previous=None,
        )

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(sync_once, range(4)))

    # Each sync records when it took the lock and when it finished; with no previous status
    # every one of them records a run, and no two may overlap.
    runs = sorted(harness.runs.latest("default.homelab"), key=lambda run: run.started_at)
    assert len(runs) == 4
    for earlier, later in itertools.pairwise(runs):
        assert earlier.finished_at is not None and earlier.finished_at <= later.started_at
    assert [run.created for run in runs] == [26, 0, 0, 0]


def test_an_unreachable_remote_keeps_the_last_state_and_backs_off(
    harness: Harness, tmp_path: pathlib.Path
) -> None:
    harness.reconcile()
    harness.writes()
    down = harness.source.model_copy(
        update={"spec": harness.source.spec.model_copy(update={"url": "http://127.0.0.1:9/x.git"})}
    )
    harness.source = down

    # One failure after another, each pass as a runtime makes it: the pause doubles from 5 s
    # up to the source's interval, and a transient failure never stalls the source.
    result = harness.reconcile()
    assert result.transient
    kind = git_source.GitSourceKind(
        reconciling.Services(
            store=harness.store, runs=harness.runs, secrets=EnvironmentSecrets({}),
            heartbeats=heartbeats.HeartbeatStore(harness.conninfo),
            reports=bot_reports.BotReportStore(harness.conninfo), state_dir=tmp_path,
        )
    )  # fmt: skip
    document = down.model_dump(mode="json", by_alias=True, exclude_none=True)
    recorded = RecordingSink()
    runner = reconciling.Runner(kind, down.key, sink=recorded, clock=lambda: NOW)
    delays = [runner.run(document, None, uid=None) for _ in range(5)]

    assert delays == [5.0, 10.0, 20.0, 40.0, 60.0]
    assert harness.writes() == []
    assert len(harness.store.list("NebulaNode")) == 3
    ready = harness.ready()
    assert ready is not None and ready.reason == git_source.FETCH_FAILED
    assert harness.status is not None
    assert conditions.find(harness.status.conditions, conditions.STALLED) is None
    assert conditions.find(harness.status.conditions, conditions.RECONCILING) is not None


def test_an_object_changed_behind_the_syncs_back_is_put_back(harness: Harness) -> None:
    harness.reconcile()
    harness.reconcile()  # the store's inventory is now memoised: the edit below must show
    harness.writes()
    key = ResourceKey("NebulaModel", "default", "llama3-1-8b")
    with psycopg.connect(harness.conninfo, autocommit=True) as conn:
        conn.execute(
            "UPDATE resources SET document = jsonb_set(document, '{spec,size}', '\"1G\"')"
            " WHERE kind = %s AND namespace = %s AND name = %s",
            (key.kind, key.namespace, key.name),
        )
    assert [w.key for w in harness.writes()] == [key]

    harness.reconcile()

    assert [(w.key, w.op) for w in harness.writes()] == [(key, "update")]
    stored = harness.store.get(key)
    assert stored is not None and stored.document["spec"]["size"] == "4.9G"
    assert harness.store.inventory("default.homelab")[key].drifted is False


def _nowhere(harness: Harness) -> str:
    """A database that does not exist on the harness's server: every connection is refused."""
    return psycopg.conninfo.make_conninfo(harness.conninfo, dbname="nebula_no_such_database")


def test_a_broken_revision_polled_again_and_again_is_told_and_recorded_once(
    harness: Harness,
) -> None:
    # Regression (issue 14.5): a source failing on the same bad revision wrote a history row
    # (and an event) at every poll, ~1,440 a day.
    harness.reconcile()
    models = harness.remote.read("manifests/models.yaml")
    harness.remote.write("manifests/models.yaml", models.replace("size: 4.9G", "size: lots", 1))
    harness.remote.commit("Oops")

    first = harness.reconcile()
    again = [harness.reconcile() for _ in range(3)]

    assert [event.type for event in first.events] == ["Warning"]
    assert all(result.events == () and result.status == first.status for result in again)
    results = [run.result for run in harness.runs.latest("default.homelab")]
    assert results == ["failed", "applied"]


def test_a_lock_the_database_cannot_give_fails_as_lock_failed_and_retries(
    harness: Harness,
) -> None:
    outcome = harness.reconcile(runs=History(_nowhere(harness)))

    ready = harness.ready()
    assert ready is not None and (ready.status, ready.reason) == ("False", git_source.LOCK_FAILED)
    assert outcome.transient
    assert harness.writes() == []


def test_following_merged_changes_that_fails_leaves_the_sync_applied(harness: Harness) -> None:
    # Side work after the apply: the change store does not answer.
    outcome = harness.reconcile(changes=ChangeStore(_nowhere(harness)))

    ready = harness.ready()
    assert ready is not None and (ready.status, ready.reason) == ("True", git_source.APPLIED)
    assert not outcome.transient


def test_reconciling_tells_a_new_revision_loading_and_applying_and_a_poll_tells_nothing(
    harness: Harness,
) -> None:
    told: list[str] = []
    commit = harness.remote.commit("Nothing changes but the revision")

    harness.reconcile(progress=told.append)
    first = list(told)
    harness.reconcile(progress=told.append)

    assert first == [f"loading {commit[:7]}", "applying 26 objects, pruning 0"]
    assert told == first  # the second pass found the same revision applied: nothing to tell
