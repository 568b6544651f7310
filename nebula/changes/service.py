"""The change-request core: intents become commits on branches; approval merges them.

Called by the web UI, the CLI (``nebula change``), the bots and pipelines — each with a
requester and an origin — and by the GitSource reconciler, which reports applied revisions so
merged changes follow through to ``applied``. Every change is a commit on ``changes/<id>``
(the requester as author), pushed to the GitSource's remote, and validated whole before that:
a change that would make the manifests invalid, or that changes nothing, is refused and nothing
is committed. Edits never leave the GitSource's folder. Every move is in the audit log.

Whether a waiting change still merges into its target branch as the branch is now is
:meth:`ChangeService.checks`' answer, asked by the pages and the API whenever they show one;
it writes nothing and remembers its answer per (change commit, target commit), so only a move
of either costs a merge again. A rebase makes the change again on the newest commit, clears
its approval, and records which newer edits of the target it would undo
(:attr:`~nebula.changes.requests.ChangeRequest.overrides`).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import posixpath
import re
from collections.abc import Callable, Sequence

import pygit2

from nebula import audit, errors, manifests
from nebula.changes import intents, requests
from nebula.manifests import editing, loading
from nebula.resources.git_source import GitRef, GitSource
from nebula.sources import fetching
from nebula.store import base

__all__ = ["CHECKED", "REBASABLE", "ChangeService", "MergeCheck", "Person", "follow"]

_PERSON_RE = re.compile(r"^\s*(?P<name>[^<>]+?)\s*<(?P<email>[^<>\s]+)>\s*$")
_PUSH_ATTEMPTS = 3
_CHECKS_KEPT = 4096  # merge answers remembered; past that the memo starts again
COMMITTER = pygit2.Signature("Nebula Command", "nebula@localhost")
CHECKED: tuple[requests.State, ...] = ("open", "approved")
"""States of a change whose mergeability is checked when it is shown (one in conflict already
names its files; a decided one merges no more)."""
REBASABLE: tuple[requests.State, ...] = ("open", "approved", "conflict")
"""States a change may be rebased from; a rebase leaves it ``open``, its approval cleared."""


@dataclasses.dataclass(frozen=True)
class MergeCheck:
    """Whether a waiting change still merges cleanly into its target branch as it is now."""

    target_revision: str | None
    """The target branch's newest commit it was checked against; None when it could not be."""
    conflict_files: tuple[str, ...] = ()
    """The files that no longer merge (the target changed the same lines); empty: it merges."""
    problem: str | None = None
    """Why it could not be checked (the remote did not answer), when it could not."""

    @property
    def applies(self) -> bool | None:
        """True when it merges cleanly, False when not, None when it could not be checked."""
        return None if self.target_revision is None else not self.conflict_files


@dataclasses.dataclass(frozen=True)
class Person:
    """Who asks for or decides a change: the author of its commit."""

    name: str
    email: str

    @classmethod
    def parse(cls, text: str) -> Person:
        """``Ada Admin <ada@example.com>``, or a bare name (``alice``: ``alice@nebula.invalid``)."""
        if match := _PERSON_RE.match(text):
            return cls(match["name"], match["email"])
        name = text.strip() or "someone"
        handle = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-") or "someone"
        return cls(name, f"{handle}@nebula.invalid")

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"

    def signature(self) -> pygit2.Signature:
        """The git signature of this person, dated now."""
        return pygit2.Signature(self.name, self.email)


class ChangeService:
    """Opens, merges, rejects and rebases the changes of one GitSource."""

    def __init__(
        self,
        *,
        # Where changes live and where they go.
        conninfo: str,
        source: GitSource,
        mirror: fetching.Mirror,
        credentials: fetching.Credentials | None = None,
        # Who hears that a change was merged (the runtime's SyncTrigger.request).
        merged: Callable[[GitSource], None] | None = None,
    ) -> None:
        if source.spec.ref.branch is None:
            raise errors.ConfigurationError(
                f"{source.key} follows a tag or a commit: changes need a branch to merge into"
            )
        self._conninfo = conninfo
        self._source = source
        self._branch: str = source.spec.ref.branch
        self._folder = posixpath.normpath(source.spec.path).strip("/")
        self._mirror = mirror
        self._credentials = credentials
        self._merged = merged
        self.store = requests.ChangeStore(conninfo)
        self.source_id = base.source_id(source.key)
        # (change commit, target commit) -> conflicting files: commits never change.
        self._checked: dict[tuple[str, str], tuple[str, ...]] = {}

    # --- Opening -------------------------------------------------------------------------

    def open(
        self,
        intent: intents.Intent,
        *,
        requester: Person,
        origin: requests.Origin,
        reply_to: str | None = None,
    ) -> requests.ChangeRequest:
        """A change for the intent, committed and pushed on its own branch; waits for approval.

        ``reply_to`` says where a bot reports the change's moves (the chat channel it was asked
        in). The same request (requester, intent) while it still waits returns the same change.
        Raises ResourceNotFound (no such resource under the source's folder), NothingToChange,
        InvalidChange (with every manifest error) and the git errors of fetching and pushing.
        """
        key = _idempotency_key(self.source_id, str(requester), intent)
        if (existing := self.store.live(key)) is not None:
            return existing
        head = self._fetch()
        path, before, after = self._edited(intent, head.commit)
        change = self.store.next_id()
        branch = f"changes/{change}"
        commit = self._commit(head.commit, path, after, intent.title(), requester, branch)
        self._push([f"+refs/heads/{branch}:refs/heads/{branch}"])
        opened = self.store.insert(
            requests.ChangeRequest(
                id=change, title=intent.title(), intent=intent.model_dump(mode="json"),
                requester=str(requester), origin=origin, source=self.source_id,
                target_branch=self._branch, branch=branch, file=path,
                base_revision=head.commit, head_revision=commit, merge_revision=None,
                diff=_diff(path, before, after), state="open", conflict_files=[],
                decided_by=None, reason=None, idempotency_key=key, reply_to=reply_to,
                created_at=head.time, updated_at=head.time,
            )
        )  # fmt: skip
        self._audit(str(requester), "change.opened", opened, origin=origin)
        return opened

    def _edited(self, intent: intents.Intent, commit: str) -> tuple[str, str, str]:
        """The file declaring the intent's target, its text, and its text after the intent."""
        files = self._mirror.files(commit, self._folder or ".")
        texts: dict[str, str] = {}
        found: str | None = None
        namespace = self._source.key.namespace or "default"
        for file in files:
            if file.link:
                continue
            texts[file.path] = self._mirror.read(file.blob).decode("utf-8", errors="replace")
            if found is None and intent.target in editing.documents(
                texts[file.path], namespace=namespace
            ):
                found = file.path
        if found is None:
            raise errors.ResourceNotFound(
                f"{intent.target} is not declared under {self._folder or '.'}/ "
                f"of {self._source.spec.url}"
            )
        _inside(found, self._folder)
        after = editing.edit(texts[found], intent.target, intent.edit, namespace=namespace)
        if after == texts[found]:
            raise errors.NothingToChange(f"{intent.title()}: it is so already")
        # The whole desired set with the edit must be valid, or nothing is committed.
        loaded = [
            loading.load_file(
                path, (after if path == found else text).encode(), namespace=namespace
            )
            for path, text in texts.items()
        ]
        checked = manifests.assemble(loaded)
        if checked.errors:
            raise errors.InvalidChange(f"{intent.title()} would not be valid", checked.errors)
        return found, texts[found], after

    def _commit(
        self, parent: str, path: str, text: str, message: str, author: Person, branch: str
    ) -> str:
        with self._mirror.writing() as repo:
            base_commit = repo[parent].peel(pygit2.Commit)
            index = pygit2.Index()
            index.read_tree(base_commit.tree)
            mode = index[path].mode
            index.add(pygit2.IndexEntry(path, repo.create_blob(text.encode()), mode))
            tree = index.write_tree(repo)
            oid = repo.create_commit(
                None, author.signature(), COMMITTER, message, tree, [base_commit.id]
            )
            # Forced: a rebase moves the change's branch to a commit on a newer base.
            repo.references.create(f"refs/heads/{branch}", oid, force=True)
        return str(oid)

    # --- Deciding ------------------------------------------------------------------------

    def approve(self, change: int, *, approver: Person) -> requests.ChangeRequest:
        """Merges the change into the target branch and pushes; the sync then applies it.

        Safe to call twice or from two places at once: the change is merged exactly once and
        the second caller gets it as merged. A change that no longer merges cleanly goes to
        ``conflict`` with the files named, and nothing is merged.
        """
        with self.store.lock(change):
            current = self.store.get(change)
            if current.state in ("merged", "applied"):
                return current
            if current.state not in ("open", "approved"):
                raise errors.PermanentError(f"change #{change} is {current.state}, not open")
            approved = self.store.move(
                change, leaving=("open", "approved"), to="approved", decided_by=str(approver)
            )
            assert approved is not None  # the lock keeps its state from moving meanwhile
            if current.state == "open":
                self._audit(str(approver), "change.approved", approved)
            return self._merge(approved, approver)

    def _merge(self, change: requests.ChangeRequest, approver: Person) -> requests.ChangeRequest:
        for attempt in range(_PUSH_ATTEMPTS):
            head = self._fetch().commit
            merged, conflicts = self._merged_commit(change, head, approver)
            if conflicts:
                moved = self.store.move(
                    change.id, leaving=("approved",), to="conflict", conflict_files=conflicts,
                    reason="the target branch changed the same lines: rebase the change",
                )  # fmt: skip
                assert moved is not None
                self._audit(str(approver), "change.conflict", moved, files=conflicts)
                return moved
            if merged == head:
                break  # already on the target branch (a merge that died before recording)
            try:
                self._push([f"refs/heads/nebula-merge:refs/heads/{self._branch}"])
                break
            # Someone pushed to the target branch between our fetch and our push: again.
            except fetching.PushRefused:
                if attempt == _PUSH_ATTEMPTS - 1:
                    raise
        moved = self.store.move(
            change.id, leaving=("approved",), to="merged", merge_revision=merged
        )
        assert moved is not None
        self._audit(str(approver), "change.merged", moved, revision=merged)
        if self._merged is not None:
            self._merged(self._source)
        return moved

    def _merged_commit(
        self, change: requests.ChangeRequest, head: str, approver: Person
    ) -> tuple[str, list[str]]:
        """The target's new commit holding the change (a fast-forward or a merge), or conflicts."""
        with self._mirror.writing() as repo:
            theirs = change.head_revision
            if head == theirs or repo.descendant_of(head, theirs):
                return head, []
            if repo.descendant_of(theirs, head):
                new = theirs
            else:
                index = repo.merge_commits(head, theirs)
                if index.conflicts is not None:
                    return head, list(_conflict_files(index))
                tree = index.write_tree(repo)
                message = f"Merge change #{change.id}: {change.title}"
                new = str(
                    repo.create_commit(
                        None, approver.signature(), COMMITTER, message, tree,
                        [pygit2.Oid(hex=head), pygit2.Oid(hex=theirs)],
                    )
                )  # fmt: skip
            repo.references.create("refs/heads/nebula-merge", new, force=True)
            return new, []

    # --- Checking --------------------------------------------------------------------------

    def checks(self, changes: Sequence[requests.ChangeRequest]) -> dict[int, MergeCheck]:
        """Whether each waiting change (open or approved) merges into the target branch's newest
        commit, by change id; other changes are left out. Writes nothing.

        One fetch of the target branch for all of them; a remote that does not answer makes
        every answer unknown (``problem`` says why) rather than failing the caller.
        """
        waiting = [change for change in changes if change.state in CHECKED]
        if not waiting:
            return {}
        try:
            head = self._fetch().commit
        # The remote is down or refuses us: the page still shows, saying it could not check.
        except (errors.SourceUnavailable, errors.SourceRejected) as error:
            return {change.id: MergeCheck(None, problem=str(error)) for change in waiting}
        found: dict[int, MergeCheck] = {}
        for change in waiting:
            key = (change.head_revision, head)
            files = self._checked.get(key)
            if files is None:
                try:
                    files = self._conflicts(change, head)
                # The change's commit is not in this mirror, and its branch cannot be fetched.
                except (errors.SourceUnavailable, errors.SourceRejected) as error:
                    found[change.id] = MergeCheck(None, problem=str(error))
                    continue
                if len(self._checked) >= _CHECKS_KEPT:
                    self._checked.clear()
                self._checked[key] = files
            found[change.id] = MergeCheck(head, files)
        return found

    def _conflicts(self, change: requests.ChangeRequest, head: str) -> tuple[str, ...]:
        """The files that would conflict if ``change`` merged into ``head`` now."""
        with self._mirror.writing() as repo:
            known = change.head_revision in repo
        if not known:
            # Made by another process with its own mirror (the CLI, a bot): fetch its branch.
            spec = self._source.spec
            self._mirror.fetch(spec.url, GitRef(branch=change.branch), self._credentials)
        with self._mirror.writing() as repo:
            theirs = change.head_revision
            if head == theirs or repo.descendant_of(head, theirs):
                return ()
            if repo.descendant_of(theirs, head):
                return ()
            index = repo.merge_commits(head, theirs)
            return _conflict_files(index) if index.conflicts is not None else ()

    def reject(self, change: int, *, actor: Person, reason: str = "") -> requests.ChangeRequest:
        """Closes a change without merging it; its branch stays for the record."""
        with self.store.lock(change):
            moved = self.store.move(
                change, leaving=("open", "conflict"), to="rejected",
                decided_by=str(actor), reason=reason or None,
            )  # fmt: skip
            if moved is None:
                current = self.store.get(change)
                raise errors.PermanentError(f"change #{change} is {current.state}, not open")
        self._audit(str(actor), "change.rejected", moved, reason=reason)
        return moved

    def rebase(self, change: int, *, actor: Person) -> requests.ChangeRequest:
        """Runs the change's intent again on the target's newest commit (after a conflict, or
        when the target moved), and leaves it ``open``.

        An approval is cleared: the new commit is another change and must be approved again.
        Lines the new commit replaces that the target itself changed since the change was made
        are kept in :attr:`~nebula.changes.requests.ChangeRequest.overrides` (and the audit
        log), so its page shows that approving undoes those newer edits.
        """
        with self.store.lock(change):
            current = self.store.get(change)
            if current.state not in REBASABLE:
                raise errors.PermanentError(f"change #{change} is {current.state}: no rebase")
            intent = intents.parse(current.intent)
            head = self._fetch()
            path, before, after = self._edited(intent, head.commit)
            overrides = self._overrides(current, path, before, after)
            author = Person.parse(current.requester)
            commit = self._commit(head.commit, path, after, intent.title(), author, current.branch)
            self._push([f"+refs/heads/{current.branch}:refs/heads/{current.branch}"])
            moved = self.store.move(
                change, leaving=REBASABLE, to="open", base_revision=head.commit,
                head_revision=commit, diff=_diff(path, before, after), file=path,
                conflict_files=[], reason=None, decided_by=None, overrides=overrides,
            )  # fmt: skip
            assert moved is not None
        detail: dict[str, object] = {"revision": commit}
        if current.decided_by:
            detail["approval cleared"] = current.decided_by
        if overrides:
            detail["overrides"] = overrides
        self._audit(str(actor), "change.rebased", moved, **detail)
        return moved

    def _overrides(
        self, change: requests.ChangeRequest, path: str, before: str, after: str
    ) -> list[str]:
        """The lines of ``before`` (the target's newest text of ``path``) that ``after`` (the
        change made again) writes over with what the change wrote before, although the target
        changed them since ``change`` was made: newer edits that approving would undo.

        A line the change now writes differently than before (it kept the target's edit, a
        comment say, and added its own) undoes nothing. Those found by an earlier rebase stay
        while the change still replaces them.
        """
        now, new = before.splitlines(), after.splitlines()
        matcher = difflib.SequenceMatcher(a=now, b=new, autojunk=False)
        replaced = [op for op in matcher.get_opcodes() if op[0] in ("replace", "delete")]
        found: list[str] = []
        if path == change.file:
            try:
                made_on = self._text_at(change.base_revision, path).splitlines()
                wrote = set(self._text_at(change.head_revision, path).splitlines())
            # The file was not there (or not this path) on the old base: nothing to compare.
            except KeyError:
                made_on, wrote = now, set()
            changed_since = _changed(made_on, now)
            for _, start, end, new_start, new_end in replaced:
                if all(line in wrote for line in new[new_start:new_end]):
                    found += [now[i] for i in range(start, end) if i in changed_since]
        still = {now[i] for _, start, end, _, _ in replaced for i in range(start, end)}
        kept = [line for line in change.overrides if line in still and line not in found]
        return found + kept

    def _text_at(self, commit: str, path: str) -> str:
        """The text of ``path`` at ``commit``; KeyError when the mirror has neither."""
        with self._mirror.writing() as repo:
            if commit not in repo:
                raise KeyError(commit)
            entry = repo[commit].peel(pygit2.Commit).tree[path]
            return bytes(repo[entry.id].peel(pygit2.Blob).data).decode("utf-8", errors="replace")

    # --- Following the sync --------------------------------------------------------------

    def follow(self, source: str, revision: str) -> list[requests.ChangeRequest]:
        """Marks merged changes ``applied`` once the sync applied a revision that holds them."""
        if source != self.source_id:
            return []
        self._fetch()
        return follow(self.store, source=source, revision=revision, mirror=self._mirror)

    # --- Git and the audit log -----------------------------------------------------------

    def _fetch(self) -> fetching.Revision:
        spec = self._source.spec
        return self._mirror.fetch(spec.url, GitRef(branch=self._branch), self._credentials)

    def _push(self, refspecs: list[str]) -> None:
        self._mirror.push(self._source.spec.url, refspecs, self._credentials)

    def _audit(
        self, actor: str, action: str, change: requests.ChangeRequest, **detail: object
    ) -> None:
        audit.record(
            self._conninfo, actor=actor, action=action, subject=f"change/{change.id}",
            detail={"title": change.title, "state": change.state, **detail},
        )  # fmt: skip


def follow(
    store: requests.ChangeStore, *, source: str, revision: str, mirror: fetching.Mirror
) -> list[requests.ChangeRequest]:
    """Marks the merged changes of ``source`` held by ``revision`` as ``applied``.

    Called by the GitSource reconciler once it applied ``revision``, with its own mirror (which
    holds that revision, and so every commit before it). Safe to repeat.
    """
    waiting = store.list(states=["merged"], source=source)
    if not waiting:
        return []
    with mirror.writing() as repo:
        held = [
            change
            for change in waiting
            if change.merge_revision
            and (
                change.merge_revision == revision
                # Merged after this revision was fetched: the mirror does not have it yet.
                or (
                    change.merge_revision in repo
                    and repo.descendant_of(revision, change.merge_revision)
                )
            )
        ]
    done = []
    for change in held:
        moved = store.move(change.id, leaving=("merged",), to="applied")
        if moved is not None:
            audit.record(
                store.conninfo, actor="nebula", action="change.applied",
                subject=f"change/{moved.id}",
                detail={"title": moved.title, "state": moved.state, "revision": revision},
            )  # fmt: skip
            done.append(moved)
    return done


def _inside(path: str, folder: str) -> None:
    """Refuses a path outside the source's folder (a link, ``..``): edits stay inside."""
    normal = posixpath.normpath(path)
    if normal.startswith("../") or normal.startswith("/"):
        raise errors.PermanentError(f"{path} is outside the repository")
    if folder not in ("", ".") and not normal.startswith(folder + "/"):
        raise errors.PermanentError(f"{path} is outside {folder}/, the GitSource's folder")


def _conflict_files(index: pygit2.Index) -> tuple[str, ...]:
    """The files a merge index holds in conflict, sorted."""
    conflicts = index.conflicts
    assert conflicts is not None  # asked only of an index with conflicts
    return tuple(sorted({entry.path for entries in conflicts for entry in entries if entry}))


def _changed(old: list[str], new: list[str]) -> set[int]:
    """The lines of ``new`` that are not in ``old`` as they stand (added or changed), by index."""
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    return {
        line
        for tag, _, _, start, end in matcher.get_opcodes()
        if tag in ("replace", "insert")
        for line in range(start, end)
    }


def _diff(path: str, before: str, after: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    return "".join(lines)


def _idempotency_key(source: str, requester: str, intent: intents.Intent) -> str:
    what = intent.model_dump(mode="json", exclude={"requested_at"})
    text = json.dumps({"source": source, "requester": requester, "intent": what}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
