"""The ``mailmend`` command line: :mod:`mailmend.cli.main` parses and dispatches; one module
per subcommand (:mod:`.check`, :mod:`.records`, :mod:`.queue`); errors and exit codes in
:mod:`.errors`; the options several subcommands share (the fleet file, ``--host``, seconds) in
:mod:`.options`."""
