"""Git sources: local mirrors fetched with pygit2, and the files of a revision."""

from nebula.sources import fetching, local
from nebula.sources.fetching import Credentials, File, Mirror, Revision

__all__ = ["Credentials", "File", "Mirror", "Revision", "fetching", "local"]
