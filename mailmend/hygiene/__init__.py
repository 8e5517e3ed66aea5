"""Sending hygiene: hard bounces -> suppression tables, and queue triage.

- :mod:`mailmend.hygiene.bounces`: parse Postfix delivery lines, keep hard bounces, merge them
  with the admin allow/deny lists and render the ``check_recipient_access`` and
  ``transport_maps`` tables.
- :mod:`mailmend.hygiene.scan`: the on-host shell pipeline that finds hard-bounce lines.
- :mod:`mailmend.hygiene.queue`: parse ``postqueue -j`` and flag a mass mailing or backscatter.

See docs/hygiene.md.
"""
