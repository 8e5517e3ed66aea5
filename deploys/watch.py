"""``pyinfra inventory.py deploys/watch.py``: ``mailmend watch`` on the fleet's monitor host,
on a timer. Composition only."""

from mailmend.deploys.watch import watch_deploy

watch_deploy()
