"""``nebula sync`` and ``nebula plan``: the sync from a terminal, on the embedded runtime's state.

Registered under the ``nebula.commands`` entry points (the core CLI does not import
controllers). ``sync --once`` runs one reconcile of each GitSource and prints what it did;
without ``--once`` it keeps syncing (the embedded runtime without the web UI). ``plan`` shows
what a sync would change, as a diff, without writing anything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import getpass
import io
import json
import os
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any

import pydantic
import rich.console
import rich.markup
import ruamel.yaml

from controllers import embedded, git_source, local
from nebula import changes, errors, manifests, settings
from nebula.resources import ResourceKey
from nebula.resources.git_source import GitSource
from nebula.sources import Mirror
from nebula.store import Plan, StoredObject, source_id
from nebula.sync import FileCache, planning, syncing

__all__ = [
    "CHANGE",
    "PLAN",
    "SYNC",
    "ChangeCommand",
    "PlanCommand",
    "SyncCommand",
    "add_state_options",
    "intent_arguments",
]

_out = rich.console.Console(highlight=False, soft_wrap=True)
_err = rich.console.Console(stderr=True, highlight=False, soft_wrap=True)
EXAMPLE = pathlib.Path("manifests")


def add_state_options(parser: argparse.ArgumentParser) -> None:
    """The options every embedded-runtime command shares: where state is, what to sync."""
    parser.add_argument("--state-dir", type=pathlib.Path, help="default: .nebula")
    parser.add_argument("--database-url", help="default: $DATABASE_URL, else a private server")
    parser.add_argument("--repo", help="git URL to sync from (default: a local copy of manifests/)")
    parser.add_argument("--branch", default="main")
    parser.add_argument("--path", dest="repo_path", default=None, help="folder in the repository")
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


@contextlib.contextmanager
def _opened(args: argparse.Namespace) -> Iterator[tuple[local.LocalState, list[StoredObject]]]:
    """The local state with its bootstrap source, and the GitSources to work on."""

    def say(message: str) -> None:
        _err.print(message, markup=False)

    with local.local_state(_config(args), say=say) as state:
        local.bootstrap_source(
            state,
            repo=args.repo,
            branch=args.branch,
            path=args.repo_path or ("manifests" if args.repo else "."),
            manifests=args.manifests,
            say=say,
        )
        sources = state.store.list("GitSource")
        if args.source:
            sources = [s for s in sources if f"{s.key.namespace}/{s.key.name}" == args.source]
            if not sources:
                raise errors.ResourceNotFound(f"no GitSource {args.source!r} in the store")
        yield state, sources


def _mirror(state: local.LocalState, key: ResourceKey) -> Mirror:
    return Mirror(state.state_dir / "mirrors" / str(key.namespace) / f"{key.name}.git")


class SyncCommand:
    """``nebula sync``: sync the GitSources of the embedded runtime now."""

    name = "sync"
    help = "sync the GitSources now (--once), or keep syncing"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Adds the sync options."""
        add_state_options(parser)
        parser.add_argument("--once", action="store_true", help="sync once and exit")
        parser.add_argument("--source", help="only this GitSource (namespace/name)")

    def run(self, args: argparse.Namespace) -> int:
        """Syncs; exit 1 when a source is not Ready afterwards."""
        with _opened(args) as (state, sources):
            if not args.once:
                return _keep_syncing(state)
            ready = True
            for stored in sources:
                step = local.git_source_controller(state).reconcile(stored, attempt=1)
                if step.status is not None:
                    state.store.write_status(stored.key, step.status)
                ready = _report(stored.key, step) and ready
            return 0 if ready else 1


def _report(key: ResourceKey, step: embedded.Step) -> bool:
    conditions = (step.status or {}).get("conditions", [])
    found = next((c for c in conditions if c["type"] == "Ready"), None)
    if found is None:
        _out.print(f"{key}: no status", markup=False)
        return False
    mark = {"True": "ok", "False": "FAILED", "Unknown": "--"}[found["status"]]
    _out.print(f"{key}: {mark} {found['reason']}: {found['message']}", markup=False)
    return bool(found["status"] != "False")


def _keep_syncing(state: local.LocalState) -> int:
    async def main() -> None:
        stop = local.stop_on_signals()
        runtime = local.runtime(state)
        _err.print("syncing; Ctrl-C stops", markup=False)
        await runtime.run(stop)

    asyncio.run(main())
    return 0


class PlanCommand:
    """``nebula plan``: what a sync would change, as a diff; writes nothing."""

    name = "plan"
    help = "show what a sync would change, as a diff (writes nothing)"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Adds the plan options."""
        add_state_options(parser)
        parser.add_argument(
            "folder",
            nargs="?",
            type=pathlib.Path,
            help="plan from this folder instead of the source's latest revision",
        )
        parser.add_argument("--source", help="the GitSource to compare with (namespace/name)")

    def run(self, args: argparse.Namespace) -> int:
        """Prints the plan of each source; exit 1 when the manifests are invalid."""
        with _opened(args) as (state, sources):
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
                    _print_plan(state, plan)
            return 0 if valid else 1


def _plan_folder(
    state: local.LocalState, source: GitSource, folder: pathlib.Path
) -> tuple[Plan, list[errors.ManifestError]]:
    loaded = manifests.load_path(folder, namespace=source.key.namespace or "default")
    if loaded.errors:
        return Plan(), loaded.errors
    wanted = [planning.desired(resource) for resource in loaded.resources.values()]
    applied = state.store.inventory(source_id(source.key))
    return planning.plan(wanted, applied, prune=source.spec.prune), []


def _print_plan(state: local.LocalState, plan: Plan) -> None:
    for item in plan.create:
        _out.print(f"  [green]+ create {item.key}[/green]")
    for item in plan.update:
        _out.print(f"  [yellow]~ update {item.key}[/yellow]")
        stored = state.store.get(item.key)
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
    return changes.Person.parse(given or os.environ.get("NEBULA_USER") or getpass.getuser())


class ChangeCommand:
    """``nebula change``: propose, list, show, approve, reject and rebase change requests."""

    name = "change"
    help = "change requests: open (an intent), list, show, approve, reject, rebase"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Adds the change subcommands."""
        add_state_options(parser)
        parser.add_argument("--as", dest="person", help='who you are: "Name <email>"')
        actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        opening = actions.add_parser("open", help="propose a change: INTENT key=value ...")
        opening.add_argument("intent", choices=sorted(changes.INTENTS))
        opening.add_argument("values", nargs="*", metavar="key=value")
        listing = actions.add_parser("list", help="the changes, newest first")
        listing.add_argument("--state", action="append", choices=list(_STATES))
        for action in ("show", "approve", "reject", "rebase"):
            one = actions.add_parser(action, help=f"{action} one change")
            one.add_argument("id", type=int)
            if action == "reject":
                one.add_argument("--reason", default="")
        listed = actions.add_parser(
            "intents", help="what can be proposed: each intent's parameters and what they take"
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
            return 0
        # Read before the state is opened: a mistake in a parameter needs no database.
        intent = _intent(args.intent, args.values) if args.action == "open" else None
        with local.local_state(_config(args)) as state:
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
                return 0
            elif args.action == "approve":
                change = service.approve(args.id, approver=person)
            elif args.action == "reject":
                change = service.reject(args.id, actor=person, reason=args.reason)
            elif args.action == "rebase":
                change = service.rebase(args.id, actor=person)
            else:
                change = service.store.get(args.id)
            _print_change(change)
            return 1 if change.state == "conflict" else 0


_STATES = ("open", "approved", "merged", "applied", "rejected", "conflict")


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
