"""``pyinfra inventory.py deploys/check.py``: check every host, change nothing. Composition only."""

from mailmend.deploys.checks_deploy import checks_deploy

checks_deploy()
