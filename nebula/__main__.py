"""``python -m nebula``: the same as the ``nebula`` command."""

from nebula import cli

cli.run()
