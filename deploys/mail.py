"""``pyinfra inventory.py deploys/mail.py``: every mail host, in order. Composition only."""

from deploys.checks_deploy import checks_deploy
from deploys.hostname import hostname_deploy
from deploys.hygiene import hygiene_deploy
from deploys.opendkim import opendkim_deploy
from deploys.postfix import postfix_deploy, postfix_install_deploy
from deploys.records_deploy import records_deploy
from deploys.summary import summary_deploy

hostname_deploy()
postfix_install_deploy()
# OpenDKIM is configured, restarted and listening before Postfix's main.cf names its socket.
opendkim_deploy()
postfix_deploy()
hygiene_deploy()
summary_deploy()
records_deploy()
checks_deploy()
