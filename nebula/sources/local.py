"""A local git repository for newcomers: ``nebula up`` without ``--repo`` starts from one.

It is made once from a folder of manifests (the example homelab), as a normal repository with a
working tree, so a person can edit a file, commit, and watch the sync apply it. Never touched
again by Nebula after it is made.
"""

from __future__ import annotations

import pathlib
import shutil

import pygit2

__all__ = ["SIGNATURE", "create_repository"]

SIGNATURE = pygit2.Signature("Nebula Command", "nebula@localhost")
"""Who makes the first commit of a local repository."""


def create_repository(path: pathlib.Path, manifests: pathlib.Path) -> bool:
    """Makes ``path`` a repository whose first commit on ``main`` holds ``manifests``.

    Does nothing and returns False when ``path`` already is a repository (a restart).
    """
    if (path / ".git").exists():
        return False
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(manifests, path, dirs_exist_ok=True)
    repo = pygit2.init_repository(str(path), initial_head="main")
    repo.index.add_all()
    repo.index.write()
    tree = repo.index.write_tree()
    repo.create_commit(
        "refs/heads/main", SIGNATURE, SIGNATURE, "The example homelab, from manifests/", tree, []
    )
    return True
