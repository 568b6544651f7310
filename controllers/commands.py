"""``nebula sync``, ``plan`` and ``change``: the sync and change requests from a terminal.

Registered under the ``nebula.commands`` entry points (the core CLI does not import
controllers); they work on the embedded runtime's state. ``sync --once`` runs one reconcile of
each GitSource and prints what that run did; without ``--once`` it keeps syncing (the embedded
runtime without the web UI), and may make the state as ``nebula up`` does. ``plan`` shows what a
sync would change, as a diff, and ``change`` proposes and decides change requests: both find
the state where ``nebula up`` keeps it and make none (``plan FOLDER`` works without any).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import difflib
import getpass
import io
import json
import pathlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pydantic
import rich.console
import rich.markup
import ruamel.yaml

from controllers import embedded, git_source, local, outcomes, reconciling
from nebula import changes, cli, errors, manifests, settings
from nebula.resources import ResourceKey
from nebula.resources.git_source import GitSource
from nebula.sources import Mirror
from nebula.store import Plan, PostgresStore, StoredObject, source_id
from nebula.sync import FileCache, planning, syncing

__all__ = [
    "CHANGE",
    "PLAN",
    "SYNC",
    "ChangeCommand",
    "PlanCommand",
    "SyncCommand",
    "add_state_options",
    "add_store_options",
    "intent_arguments",
]

_out = rich.console.Console(highlight=False, soft_wrap=True)
_err = rich.console.Console(stderr=True, highlight=False, soft_wrap=True)
EXAMPLE = pathlib.Path("manifests")


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """Where the embedded runtime's state is: for every command that works on it."""
    parser.add_argument(
        "--state-dir",
        type=pathlib.Path,
        help="the state folder of nebula up (default: $NEBULA_STATE_DIR, else .nebula)",
    )
    parser.add_argument(
        "--database-url",
        help="default: $DATABASE_URL, else the private PostgreSQL of the state folder",
    )


def add_state_options(parser: argparse.ArgumentParser) -> None:
    """Where the state is and what to sync: for the commands that may make it (up, sync)."""
    add_store_options(parser)
    parser.add_argument("--repo", help="git URL to sync from (default: a local copy of manifests/)")
    parser.add_argument("--branch", default="main", help="the branch to follow (default: main)")
    parser.add_argument(
        "--path",
        dest="repo_path",
        default=None,
        help="folder in the repository (default: manifests with --repo, else the top)",
    )
    parser.add_argument(
        "--manifests",
        type=pathlib.Path,
        default=EXAMPLE,
        help="what a new local repository starts from (default: manifests/)",
    )


def _config(args: argparse.Namespace) -> settings.Settings:
    config = settings.Settings()
    update: dict[str, Any] = {}
    if args.state_dir:
        update["state_dir"] = args.state_dir
    if args.database_url:
        update["database_url"] = args.database_url
    return config.model_copy(update=update)


def _say(message: str) -> None:
    _err.print(message, markup=False)


@contextlib.contextmanager
def _opened(args: argparse.Namespace) -> Iterator[tuple[local.LocalState, list[StoredObject]]]:
    """The local state with its bootstrap source (made if need be), and the GitSources to sync."""
    with local.local_state(_config(args), say=_say) as state:
        local.bootstrap_source(
            state,
            repo=args.repo,
            branch=args.branch,
            path=args.repo_path or ("manifests" if args.repo else "."),
            manifests=args.manifests,
            say=_say,
        )
        yield state, _sources(state, args.source)


def _sources(state: local.LocalState, only: str | None) -> list[StoredObject]:
    """The GitSources of the store, or the one named ``namespace/name``."""
    sources = state.store.list("GitSource")
    if only:
        sources = [s for s in sources if f"{s.key.namespace}/{s.key.name}" == only]
        if not sources:
            raise errors.ResourceNotFound(f"no GitSource {only!r} in the store")
    return sources


def _mirror(state: local.LocalState, key: ResourceKey) -> Mirror:
    return Mirror(state.state_dir / "mirrors" / str(key.namespace) / f"{key.name}.git")


class SyncCommand:
    """``nebula sync``: sync the GitSources of the embedded runtime now."""

    name = "sync"
    help = "sync the GitSources now (--once), or keep syncing"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Adds the sync options."""
        parser.epilog = cli.examples(
            "nebula sync --once                  # sync every GitSource now, print what it did",
            "nebula sync --once --source default/local",
            "nebula sync --repo https://github.com/you/homelab.git   # keep syncing, no web UI",
        )
        add_state_options(parser)
        parser.add_argument("--once", action="store_true", help="sync once and exit")
        parser.add_argument("--source", help="only this GitSource (namespace/name)")

    def run(self, args: argparse.Namespace) -> int:
        """Syncs; exit 1 when a source is not Ready afterwards."""
        with _opened(args) as (state, sources):
            if not args.once:
                return _keep_syncing(state)
            ready = True
            kind = git_source.GitSourceKind(local.services(state))
            sink = _Telling(state.store)
            for stored in sources:
                runner = reconciling.Runner(kind, stored.key, sink=sink, clock=_utcnow)
                told = len(sink.told)
                runner.run(embedded.resource_of(stored), stored.status, uid=None)
                after = state.store.get(stored.key)
                status = after.status if after else None
                ready = _report(stored.key, status, changed=len(sink.told) > told) and ready
            return cli.EXIT_OK if ready else cli.EXIT_INVALID


class _Telling(embedded.StoreSink):
    """The store's sink, keeping the events of this run: what it did."""

    def __init__(self, store: PostgresStore) -> None:
        super().__init__(store)
        self.told: list[outcomes.Event] = []

    def event(self, key: ResourceKey, event: outcomes.Event, *, uid: str | None) -> None:
        """Logs the event, and keeps it."""
        super().event(key, event, uid=uid)
        self.told.append(event)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _report(key: ResourceKey, status: Mapping[str, Any] | None, *, changed: bool) -> bool:
    """Prints what this run did to the source; False when it is not Ready."""
    status = status or {}
    found = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
    if found is None:
        _out.print(f"{key}: no status", markup=False)
        return False
    mark = {"True": "ok", "False": "FAILED", "Unknown": "--"}[found["status"]]
    message = found["message"]
    # Ready's message tells of the last apply, which may be an earlier run's ("2998 created"
    # on a second `sync --once`). A run that applied or failed says so in its event; a Ready
    # run without one changed nothing.
    if found["status"] == "True" and not changed:
        revision = str(status.get("lastAppliedRevision", ""))[:7]
        message = f"revision {revision} is applied: nothing to do"
    _out.print(f"{key}: {mark} {found['reason']}: {message}", markup=False)
    return bool(found["status"] != "False")


def _keep_syncing(state: local.LocalState) -> int:
    async def main() -> None:
        stop = local.stop_on_signals()
        runtime = local.runtime(state)
        _err.print("syncing; Ctrl-C stops", markup=False)
        await runtime.run(stop)

    asyncio.run(main())
    return cli.EXIT_OK


class PlanCommand:
    """``nebula plan``: what a sync would change, as a diff; writes nothing."""

    name = "plan"
    help = "show what a sync would change, as a diff (writes nothing)"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Adds the plan options."""
        parser.epilog = cli.examples(
            "nebula plan                       # the newest commit against what is applied",
            "nebula plan .nebula/homelab       # your working tree, before you commit",
            "nebula plan manifests --source default/local",
        )
        add_store_options(parser)
        parser.add_argument(
            "folder",
            nargs="?",
            type=pathlib.Path,
            help="plan from this folder instead of the source's latest revision",
        )
        parser.add_argument("--source", help="the GitSource to compare with (namespace/name)")

    def run(self, args: argparse.Namespace) -> int:
        """Prints the plan of each source; exit 1 when the manifests are invalid.

        Finds the state as ``nebula up`` keeps it and makes none: without any, a folder is
        planned against nothing applied, and plain ``nebula plan`` says what to run.
        """
        config = _config(args)
        if args.folder is not None and not local.has_state(config):
            return _plan_from_nothing(args.folder, where=config.state_dir.resolve())
        instead = "run `nebula up` first, or `nebula plan FOLDER` to plan a working tree"
        with local.existing_state(config, instead=instead, say=_say) as state:
            sources = _sources(state, args.source)
            if not sources:
                raise errors.ResourceNotFound(f"no GitSource in {state.state_dir}: {instead}")
            valid = True
            for stored in sources:
                source = GitSource.model_validate(embedded.resource_of(stored))
                if source.spec.suspend:
                    _out.print(f"{stored.key}: suspended", markup=False)
                    continue
                if args.folder is not None:
                    plan, problems = _plan_folder(state, source, args.folder)
                    where = str(args.folder)
                else:
                    result = syncing.sync(
                        source, mirror=_mirror(state, stored.key),
                        credentials=git_source.credentials(source, state.secrets),
                        cache=FileCache(), store=state.store, dry_run=True,
                    )  # fmt: skip
                    plan, problems = result.plan, list(result.errors)
                    where = f"revision {result.revision.short} ({result.revision.message})"
                _out.print(f"{stored.key} from {where}:", markup=False)
                for problem in problems:
                    _out.print(f"  {problem}", markup=False)
                valid = valid and not problems
                if not problems:
                    _print_plan(state.store.get, plan)
            return cli.EXIT_OK if valid else cli.EXIT_INVALID


def _plan_from_nothing(folder: pathlib.Path, *, where: pathlib.Path) -> int:
    """Plans a folder against an empty store: what a first ``nebula up`` would create."""
    loaded = manifests.load_path(folder)
    _out.print(
        f"{folder} (no Nebula state in {where}: compared with nothing applied):", markup=False
    )
    for problem in loaded.errors:
        _out.print(f"  {problem}", markup=False)
    if loaded.errors:
        return cli.EXIT_INVALID
    wanted = [planning.desired(resource) for resource in loaded.resources.values()]
    _print_plan(lambda key: None, planning.plan(wanted, {}, prune=False))
    return cli.EXIT_OK


def _plan_folder(
    state: local.LocalState, source: GitSource, folder: pathlib.Path
) -> tuple[Plan, list[errors.ManifestError]]:
    loaded = manifests.load_path(folder, namespace=source.key.namespace or "default")
    if loaded.errors:
        return Plan(), loaded.errors
    wanted = [planning.desired(resource) for resource in loaded.resources.values()]
    applied = state.store.inventory(source_id(source.key))
    return planning.plan(wanted, applied, prune=source.spec.prune), []


def _print_plan(live: Callable[[ResourceKey], StoredObject | None], plan: Plan) -> None:
    """Prints a plan; ``live`` finds what an update replaces, for its diff."""
    for item in plan.create:
        _out.print(f"  [green]+ create {item.key}[/green]")
    for item in plan.update:
        _out.print(f"  [yellow]~ update {item.key}[/yellow]")
        stored = live(item.key)
        before = _yaml(stored.document) if stored else ""
        for line in difflib.unified_diff(
            before.splitlines(), _yaml(item.document).splitlines(), "live", "desired", lineterm=""
        ):
            colour = {"+": "green", "-": "red", "@": "cyan"}.get(line[:1], "default")
            _out.print(f"      [{colour}]{rich.markup.escape(line)}[/{colour}]")
    for key in plan.prune:
        _out.print(f"  [red]- prune {key}[/red]")
    _out.print(
        f"  {len(plan.create)} to create, {len(plan.update)} to update, "
        f"{len(plan.prune)} to prune, {plan.unchanged} unchanged",
        markup=False,
    )


def _yaml(document: Mapping[str, Any]) -> str:
    yaml = ruamel.yaml.YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    stream = io.StringIO()
    yaml.dump(dict(document), stream)
    return stream.getvalue()


def intent_arguments(name: str, pairs: list[str]) -> dict[str, Any]:
    """An intent's data from ``key=value`` words; ``a.b=c`` nests (``parameters.topic=GPUs``)."""
    data: dict[str, Any] = {"intent": name}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise errors.ConfigurationError(f"{pair!r}: expected key=value")
        *outer, last = key.split(".")
        place = data
        for part in outer:
            place = place.setdefault(part, {})
        place[last] = value
    return data


def _person(given: str | None) -> changes.Person:
    return changes.Person.parse(given or settings.Settings().user or getpass.getuser())


class ChangeCommand:
    """``nebula change``: propose, list, show, approve, reject and rebase change requests."""

    name = "change"
    help = "change requests: open (an intent), list, show, approve, reject, rebase"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Adds the change subcommands (each needs the state of ``nebula up`` but intents)."""
        parser.epilog = cli.examples(
            "nebula change intents",
            "nebula change open scale-service service=dashboard replicas=2",
            "nebula change --as 'Ada <ada@example.com>' approve 1",
        )
        add_store_options(parser)
        parser.add_argument(
            "--as",
            dest="person",
            help='who you are: "Name <email>" (default: $NEBULA_USER, else your login)',
        )
        actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        opening = actions.add_parser(
            "open",
            help="propose a change: INTENT key=value ...",
            epilog=cli.examples(
                "nebula change open add-model-to-node model=llama3-1-8b node=windows-vm",
                "nebula change open set-service-image service=dashboard "
                "image=ghcr.io/example/nebula-dashboard:1.5.0",
                "nebula change open run-pipeline pipeline=daily-content parameters.topic=GPUs",
            ),
        )
        opening.add_argument(
            "intent", choices=sorted(changes.INTENTS), help="what to change (see: change intents)"
        )
        opening.add_argument(
            "values",
            nargs="*",
            metavar="key=value",
            help="the intent's parameters; a.b=c sets b of the mapping a",
        )
        listing = actions.add_parser(
            "list",
            help="the changes, newest first",
            epilog=cli.examples("nebula change list", "nebula change list --state open"),
        )
        listing.add_argument(
            "--state",
            action="append",
            choices=list(_STATES),
            help="only changes in this state (repeatable; default: all)",
        )
        for action, doing in _ONE_CHANGE.items():
            one = actions.add_parser(
                action,
                help=doing,
                epilog=cli.examples(
                    f"nebula change {action} 1"
                    + (" --reason 'not this week'" if action == "reject" else "")
                ),
            )
            one.add_argument("id", type=int, help="the change's number (see: change list)")
            if action == "reject":
                one.add_argument("--reason", default="", help="why, for the requester")
        listed = actions.add_parser(
            "intents",
            help="what can be proposed: each intent's parameters and what they take",
            epilog=cli.examples("nebula change intents", "nebula change intents --output json"),
        )
        listed.add_argument(
            "--output",
            "-o",
            choices=("text", "json"),
            default="text",
            help="json: the JSON schemas a bot or an assistant is offered (default: text)",
        )

    def run(self, args: argparse.Namespace) -> int:
        """Does one action; exit 1 when a change could not be made or merged."""
        if args.action == "intents":
            _print_intents(args.output)
            return cli.EXIT_OK
        # Read before the state is opened: a mistake in a parameter needs no database.
        intent = _intent(args.intent, args.values) if args.action == "open" else None
        with local.existing_state(_config(args), instead="run `nebula up` first") as state:
            service = local.change_service(state)
            person = _person(args.person)
            if intent is not None:
                change = service.open(intent, requester=person, origin="cli")
            elif args.action == "list":
                for found in service.store.list(states=args.state):
                    _out.print(
                        f"#{found.id:<5} {found.state:<9} {found.title}  "
                        f"({found.requester}, {found.origin})",
                        markup=False,
                    )
                return cli.EXIT_OK
            elif args.action == "approve":
                change = service.approve(args.id, approver=person)
            elif args.action == "reject":
                change = service.reject(args.id, actor=person, reason=args.reason)
            elif args.action == "rebase":
                change = service.rebase(args.id, actor=person)
            else:
                change = service.store.get(args.id)
            _print_change(change)
            return cli.EXIT_INVALID if change.state == "conflict" else cli.EXIT_OK


_STATES = ("open", "approved", "merged", "applied", "rejected", "conflict")
_ONE_CHANGE = {
    "show": "one change: its state, branch and diff",
    "approve": "approve one change: merge it (the sync then applies it)",
    "reject": "reject one change, with a reason",
    "rebase": "make one change again on the newest commit (after a conflict)",
}


def _intent(name: str, pairs: list[str]) -> changes.Intent:
    """The intent ``name`` with its ``key=value`` words; ConfigurationError says what is wrong."""
    try:
        return changes.intents.parse(intent_arguments(name, pairs))
    # A value that does not fit its parameter: one line naming it and what it takes.
    except pydantic.ValidationError as error:
        raise errors.ConfigurationError(changes.intents.explain(error)) from None


def _print_intents(output: str) -> None:
    """Every intent with its parameters, from the JSON schemas the bots and the API offer."""
    schemas = changes.intents.schemas()
    if output == "json":
        _out.print_json(json.dumps(schemas))
        return
    for name, schema in schemas.items():
        _out.print(f"{name}: {schema.get('description', '')}", markup=False)
        for parameter in changes.intents.parameters(name):
            if parameter.required:
                need = "required"
            elif parameter.default is not None:
                need = f"default: {parameter.default}"
            else:
                need = "optional"
            # A mapping is given one key at a time (see intent_arguments).
            word = parameter.name + (".NAME=" if parameter.schema.get("type") == "object" else "=")
            _out.print(
                f"  {word:<18} {need:<17} {parameter.accepts}. {parameter.description}",
                markup=False,
            )


def _print_change(change: changes.ChangeRequest) -> None:
    _out.print(f"#{change.id} {change.state}: {change.title}", markup=False)
    _out.print(
        f"  by {change.requester} ({change.origin}), branch {change.branch}, {change.summary}",
        markup=False,
    )
    if change.conflict_files:
        _out.print(f"  conflicts in: {', '.join(change.conflict_files)}", markup=False)
    for line in change.diff.splitlines():
        colour = {"+": "green", "-": "red", "@": "cyan"}.get(line[:1], "default")
        _out.print(f"  [{colour}]{rich.markup.escape(line)}[/{colour}]")


SYNC = SyncCommand()
PLAN = PlanCommand()
CHANGE = ChangeCommand()
