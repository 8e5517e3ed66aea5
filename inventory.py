"""pyinfra inventory for mailmend: ``pyinfra inventory.py deploys/mail.py``.

Reads ``$MAILMEND_FLEET``, else ``./fleet.toml`` (none: one line, exit 2), validates it
before anything connects and exposes the hosts as the ``mailmend`` group plus one group per
fleet group (``--limit GROUP`` or ``--limit HOST`` work as usual).
"""

from mailmend.inventory import pyinfra_groups

globals().update(pyinfra_groups())
