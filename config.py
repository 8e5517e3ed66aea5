"""pyinfra config for mailmend (pyinfra reads ./config.py before the inventory).

DIFF: show what a config change would change, line by line, in ``--dry`` runs and real runs
(pyinfra 3.10 only does so with ``--diff``). Secrets are uploaded by an operation that never
diffs (deploys/staged.py: secret_file).
"""

from pyinfra import config

config.DIFF = True
