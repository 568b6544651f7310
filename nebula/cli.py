"""The ``nebula`` command: the core's subcommands, plus those the runtimes register.

Core subcommands live here (``validate``, ``crds``, ``db``, and ``user hash`` / ``token new``
for the web UI's users file). Runtimes add theirs through the
``nebula.commands`` entry-point group (an object with ``name``, ``help``, ``configure(parser)``
and ``run(args) -> int``), so this module never imports kopf, FastAPI or the bots. A runtime's
``configure`` gives its parser an epilog of :func:`examples` and validates durations with
:func:`duration`; an option a subcommand does not know is refused with that subcommand's usage.

Exit codes (named ``EXIT_*`` here, used by every command): 0 success, 1 the input is wrong
(permanent errors, invalid manifests), 2 usage errors (argparse), 3 a service did not answer
or could not start (transient errors), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import importlib.metadata
import json
import pathlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import rich.console
import rich.markup
import rich.progress

import nebula
from nebula import auth, crds, db, errors, manifests, settings
from nebula.resources import fields

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "Command",
    "duration",
    "examples",
    "main",
    "parser",
    "run",
]

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

_out = rich.console.Console(highlight=False, soft_wrap=True)
_err = rich.console.Console(stderr=True, highlight=False, soft_wrap=True)


class Command(Protocol):
    """What a runtime registers under the ``nebula.commands`` entry-point group."""

    name: str
    help: str

    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


class _Parser(argparse.ArgumentParser):
    """A parser that refuses an unknown option with the usage of the (sub)command it was given to.

    argparse hands what a subcommand does not know up to the top-level parser, which then
    prints ``nebula``'s usage (``nebula up --prot`` showed no word of ``up``). Every subparser
    is of this class (``add_subparsers`` makes its parsers of the parent's class), and examples
    in epilogs keep their lines.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parses, then refuses what is left over here rather than in the parent."""
        found, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return found, extras


def examples(*lines: str) -> str:
    """An epilog of example command lines (one to three), for a subcommand's ``--help``.

    A line may end in ``# what it does``; the command before it must run as written (a test
    parses every example).
    """
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def duration(text: str) -> str:
    """An argparse ``type=`` for a duration option (``15s``, ``2m``): the text, once checked.

    A wrong one is a one-line usage error (exit 2) naming what a duration looks like.
    """
    try:
        length = fields.parse_duration(text)
    # Not a number and a unit: argparse turns the message into "argument --x: ...".
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if length.total_seconds() <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: must be longer than zero")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one subcommand and returns its exit code (the console script exits with it)."""
    line = parser()
    args = line.parse_args(argv)
    # Bare `nebula`: no command to run is a usage error; the help lists the commands.
    if not hasattr(args, "run"):
        line.print_help(sys.stderr)
        return EXIT_USAGE
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    # The user must change something: say what, no traceback.
    except errors.PermanentError as error:
        _err.print(f"[red]error:[/red] {error}", markup=True)
        return EXIT_INVALID
    # A service did not answer: the same command may work in a moment.
    except errors.TransientError as error:
        _err.print(f"[yellow]unavailable:[/yellow] {rich.markup.escape(str(error))}", markup=True)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def parser() -> argparse.ArgumentParser:
    """The whole command line: core commands and those the runtimes registered."""
    line = _Parser(
        prog="nebula",
        description="Nebula Command: your homelab, declared in Git.",
        epilog=examples(
            "nebula up                      # the whole product on this machine",
            "nebula validate manifests      # check manifests before you push",
            "nebula up --help               # any command's options and examples",
        ),
    )
    line.add_argument("--version", action="version", version=f"nebula {nebula.__version__}")
    commands = line.add_subparsers(title="commands", metavar="COMMAND")

    validate = commands.add_parser(
        "validate",
        help="check manifests: every error with file:line and field",
        epilog=examples(
            "nebula validate manifests",
            "nebula validate manifests/models.yaml --output json",
            "nebula validate my-team/ --namespace media",
        ),
    )
    validate.add_argument(
        "path", nargs="?", default="manifests", help="folder or file (default: manifests)"
    )
    validate.add_argument(
        "--output",
        "-o",
        choices=("text", "json"),
        default="text",
        help="text for people, json for scripts (default: text)",
    )
    validate.add_argument(
        "--namespace", default="default", help="namespace of resources that name none"
    )
    validate.set_defaults(run=_validate)

    generate = commands.add_parser(
        "crds",
        help="write the CRDs generated from the models",
        epilog=examples("nebula crds", "nebula crds --check   # exit 1 when crds/ is stale"),
    )
    generate.add_argument(
        "directory", nargs="?", default="crds", help="where to write them (default: crds)"
    )
    generate.add_argument(
        "--check", action="store_true", help="only report whether the folder is up to date"
    )
    generate.set_defaults(run=_crds)

    database = commands.add_parser(
        "db",
        help="the PostgreSQL schema",
        epilog=examples("nebula db migrate", "nebula db status"),
    ).add_subparsers(title="db commands", metavar="COMMAND", required=True)
    migrate = database.add_parser(
        "migrate",
        help="apply pending migrations",
        epilog=examples(
            "nebula db migrate",
            "nebula db migrate --database-url postgresql://nebula@localhost/nebula --to 3",
        ),
    )
    migrate.add_argument("--to", type=int, default=None, help="stop after this version")
    migrate.set_defaults(run=_db_migrate)
    state = database.add_parser(
        "status",
        help="list migrations and whether they are applied",
        epilog=examples(
            "nebula db status",
            "nebula db status --database-url postgresql://nebula@localhost/nebula",
        ),
    )
    state.set_defaults(run=_db_status)
    for sub in (migrate, state):
        sub.add_argument("--database-url", help="default: $NEBULA_DATABASE_URL or $DATABASE_URL")

    user = commands.add_parser(
        "user",
        help="users of the web UI (the users file)",
        epilog=examples("nebula user hash"),
    )
    hashing = user.add_subparsers(title="user commands", metavar="COMMAND", required=True)
    password = hashing.add_parser(
        "hash",
        help="print the argon2 hash of a password for the users file (asked without echo)",
        epilog=examples(
            "nebula user hash   # asks twice without echo; or reads stdin's first line"
        ),
    )
    password.set_defaults(run=_user_hash)
    token = commands.add_parser(
        "token",
        help="API tokens for scripts (the users file)",
        epilog=examples("nebula token new"),
    )
    tokens = token.add_subparsers(title="token commands", metavar="COMMAND", required=True)
    new = tokens.add_parser(
        "new",
        help="print a new API token and the hash the users file keeps",
        epilog=examples("nebula token new"),
    )
    new.set_defaults(run=_token_new)

    for entry in importlib.metadata.entry_points(group="nebula.commands"):
        try:
            command: Command = entry.load()
        # A runtime that cannot load (a missing optional package) must not take the core
        # commands down with it: say so, and go on without that command.
        except (ImportError, AttributeError) as error:
            _err.print(f"nebula {entry.name} is unavailable: {error}", markup=False)
            continue
        sub = commands.add_parser(command.name, help=command.help)
        command.configure(sub)
        sub.set_defaults(run=command.run)
    return line


# --- validate --------------------------------------------------------------------------------


def _validate(args: argparse.Namespace) -> int:
    root = pathlib.Path(args.path)
    if not root.exists():
        raise errors.ConfigurationError(f"{args.path}: no such file or folder")
    with _progress("Validating manifests") as advance:
        loaded = manifests.load_path(
            root, shown_as=args.path, namespace=args.namespace, progress=advance
        )
    if args.output == "json":
        _out.print_json(json.dumps(_as_json(loaded)))
    elif loaded.errors:
        for error in loaded.errors:
            _out.print(str(error), markup=False)
        count, files = len(loaded.errors), len({e.file for e in loaded.errors})
        _out.print(
            f"{count} error{'s' if count != 1 else ''} in {files} file{'s' if files != 1 else ''}"
            "; nothing would be applied",
            markup=False,
        )
    else:
        _print_summary(loaded, args.path)
    return EXIT_INVALID if loaded.errors else EXIT_OK


def _print_summary(loaded: manifests.ManifestSet, path: str) -> None:
    counts = loaded.count_by_kind()
    total = sum(counts.values())
    _out.print(f"{path}: {total} resources in {loaded.files} files, all valid", markup=False)
    for kind, count in counts.items():
        names = sorted(str(key.name) for key in loaded.resources if key.kind == kind)
        shown = ", ".join(names[:6]) + (f", … (+{len(names) - 6})" if len(names) > 6 else "")
        _out.print(f"  {kind:<14} {count:>5}  {shown}", markup=False)


def _as_json(loaded: manifests.ManifestSet) -> dict[str, Any]:
    return {
        "valid": not loaded.errors,
        "files": loaded.files,
        "resources": {
            kind: sorted(str(key) for key in loaded.resources if key.kind == kind)
            for kind in loaded.count_by_kind()
        },
        "errors": [error.to_dict() for error in loaded.errors],
    }


# --- crds ------------------------------------------------------------------------------------


def _crds(args: argparse.Namespace) -> int:
    directory = pathlib.Path(args.directory)
    if args.check:
        stale = crds.diff(directory)
        for name in stale:
            _out.print(f"{directory / name}: out of date (run `nebula crds`)", markup=False)
        return EXIT_INVALID if stale else EXIT_OK
    written = crds.write(directory)
    _out.print(f"wrote {len(written)} files to {directory}/", markup=False)
    return EXIT_OK


# --- db --------------------------------------------------------------------------------------


def _database_url(args: argparse.Namespace) -> str:
    url = args.database_url or settings.Settings().database_url
    if not url:
        raise errors.ConfigurationError(
            "no database: pass --database-url or set DATABASE_URL (a postgresql:// URL)"
        )
    return str(url)


def _db_migrate(args: argparse.Namespace) -> int:
    applied = db.migrate(
        _database_url(args),
        target=args.to,
        progress=lambda m: _err.print(f"applying {m.version:04d} {m.name}", markup=False),
    )
    _out.print(
        f"applied {len(applied)} migration{'s' if len(applied) != 1 else ''}"
        if applied
        else "the database is up to date",
        markup=False,
    )
    return EXIT_OK


def _db_status(args: argparse.Namespace) -> int:
    for state in db.status(_database_url(args)):
        when = state.applied_at.isoformat(timespec="seconds") if state.applied_at else "pending"
        _out.print(f"{state.version:04d}  {state.name:<32} {when}", markup=False)
    return EXIT_OK


# --- user hash, token new --------------------------------------------------------------------


def _user_hash(args: argparse.Namespace) -> int:
    """Prints the hash of a password typed twice without echo, or of stdin's first line."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise errors.ConfigurationError("the two passwords differ; nothing was hashed")
    else:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    _out.print(auth.hash_password(password), markup=False)
    return EXIT_OK


def _token_new(args: argparse.Namespace) -> int:
    """Prints a new token (for the script, shown once) and its hash (for the users file)."""
    token = auth.new_token()
    _out.print(f"token: {token}", markup=False)
    _out.print(f"token_hash: {auth.hash_token(token)}", markup=False)
    _err.print(
        "Give the token to the script now: it is not kept. The users file keeps the hash, "
        "under tokens: (name, token_hash, role).",
        markup=False,
    )
    return EXIT_OK


# --- progress --------------------------------------------------------------------------------


@contextlib.contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr for work that may take more than a second; silent off a tty."""
    bar = rich.progress.Progress(
        rich.progress.TextColumn("{task.description}"),
        rich.progress.BarColumn(),
        rich.progress.MofNCompleteColumn(),
        rich.progress.TimeElapsedColumn(),
        console=_err,
        transient=True,
        disable=not _err.is_terminal,
    )
    task = bar.add_task(description, total=None)

    def advance(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield advance


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())
