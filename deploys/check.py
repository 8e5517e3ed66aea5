"""``pyinfra inventory.py deploys/check.py``: check every host, change nothing. Composition only."""

from mailmend.deploys.checks_report import checks_report_deploy

checks_report_deploy()
