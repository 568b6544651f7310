"""A local git repository for newcomers: ``nebula up`` without ``--repo`` starts from one.

It is made once from a folder of manifests (the example homelab) as a bare repository — the
"remote" the sync follows and change requests are merged into — and a clone beside it to work
in: edit a file, commit, ``git push``, and watch the sync apply it, exactly as with GitHub.
Never touched again by this module after it is made.
"""

from __future__ import annotations

import pathlib
import shutil

import pygit2

__all__ = ["SIGNATURE", "create_repository"]

SIGNATURE = pygit2.Signature("Nebula Command", "nebula@localhost")
"""Who makes the first commit of a local repository."""


def create_repository(bare: pathlib.Path, work: pathlib.Path, manifests: pathlib.Path) -> bool:
    """Makes ``bare`` a repository whose ``main`` holds ``manifests``, and ``work`` a clone of it.

    The clone's ``main`` tracks the bare one, so a plain ``git push`` publishes. Does nothing and
    returns False when ``bare`` already is a repository (a restart).
    """
    if (bare / "HEAD").exists():
        return False
    work.mkdir(parents=True, exist_ok=True)
    shutil.copytree(manifests, work, dirs_exist_ok=True)
    clone = pygit2.init_repository(str(work), initial_head="main")
    clone.index.add_all()
    clone.index.write()
    tree = clone.index.write_tree()
    message = "The example homelab, from manifests/"
    clone.create_commit("refs/heads/main", SIGNATURE, SIGNATURE, message, tree, [])
    pygit2.init_repository(str(bare), bare=True, initial_head="main")
    origin = clone.remotes.create("origin", str(bare.resolve()))
    origin.push(["refs/heads/main:refs/heads/main"])
    clone.references.create("refs/remotes/origin/main", clone.head.target, force=True)
    clone.config["branch.main.remote"] = "origin"
    clone.config["branch.main.merge"] = "refs/heads/main"
    return True
