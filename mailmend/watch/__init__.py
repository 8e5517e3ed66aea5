"""``mailmend watch``: run the checks on a schedule, remember every result, alert on change.

- :mod:`mailmend.watch.model`: check results -> observations; last known state -> events.
- :mod:`mailmend.watch.state`: the SQLite tables (through :mod:`mailmend.store`).
- :mod:`mailmend.watch.alerts`: email, webhook and command channels.
- :mod:`mailmend.watch.metrics`: Prometheus metrics (textfile and HTTP).
- :mod:`mailmend.watch.history`: ``watch history`` and ``watch status``.
- :mod:`mailmend.watch.cli`: the command line.
"""
