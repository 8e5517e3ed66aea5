"""The mail deploy: every step, in order. ``pyinfra inventory.py deploys/mail.py`` runs it.

A deploy file of your own reuses it after ``pip install mailmend``::

    from mailmend.deploys import mail_deploy

    mail_deploy()
"""

from pyinfra.context import host

from mailmend.adopt.deploy import other_mta_deploy
from mailmend.deploys import contexts
from mailmend.deploys.checks_report import checks_report_deploy
from mailmend.deploys.hostname import hostname_deploy
from mailmend.deploys.hygiene import hygiene_deploy
from mailmend.deploys.opendkim import opendkim_deploy
from mailmend.deploys.postfix import postfix_deploy, postfix_install_deploy
from mailmend.deploys.records_plan import records_plan_deploy
from mailmend.deploys.summary import summary_deploy


def mail_deploy() -> None:
    """Hostname, Postfix (paced), OpenDKIM, hygiene, then the records and checks reports."""
    # Host data by the fleet file's rules before anything is read from the host.
    contexts.check_fleet_keys(host.name, contexts.host_data(host.data))
    other_mta_deploy()  # first: a host with Exim, Sendmail or OpenSMTPD stops here, unchanged
    hostname_deploy()
    postfix_install_deploy()
    # OpenDKIM is configured, restarted and listening before Postfix's main.cf names its socket.
    opendkim_deploy()
    postfix_deploy()
    hygiene_deploy()
    summary_deploy()
    records_plan_deploy()
    checks_report_deploy()
