"""The ``mailmend`` command line: :mod:`mailmend.cli.main` parses and dispatches; one module
per subcommand (:mod:`.check`, :mod:`.records`, :mod:`.queue`, and the features' own
``mailmend/FEATURE/cli.py``); errors and exit codes in :mod:`.errors`; the options several
subcommands share (the fleet file, ``--host``, seconds) in :mod:`.options`.

``main`` is re-exported: a console script installed before the package existed
(``mailmend.cli:main``) keeps working until the next ``pip install``.
"""

from mailmend.cli.main import main

__all__ = ["main"]
