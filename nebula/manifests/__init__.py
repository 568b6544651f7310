"""Manifests: reading YAML into typed resources (fast, bounded) and editing it in place.

Reading (:mod:`.parsing`, :mod:`.loading`) is for validation and sync and never writes; editing
(:mod:`.editing`) keeps comments and formatting and is what change requests use.
"""

from nebula.manifests import editing, parsing
from nebula.manifests.loading import (
    LoadedFile,
    ManifestSet,
    Origin,
    assemble,
    collector_paused,
    load_file,
    load_path,
    manifest_files,
)

__all__ = [
    "LoadedFile",
    "ManifestSet",
    "Origin",
    "assemble",
    "collector_paused",
    "editing",
    "load_file",
    "load_path",
    "manifest_files",
    "parsing",
]
