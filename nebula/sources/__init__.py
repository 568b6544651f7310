"""Git sources: local mirrors fetched with pygit2, and the files of a revision."""

from nebula.sources import fetching
from nebula.sources.fetching import Credentials, File, Mirror, Revision

__all__ = ["Credentials", "File", "Mirror", "Revision", "fetching"]
