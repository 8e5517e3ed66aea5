"""``pyinfra inventory.py deploys/mail.py``: every mail host, in order (mailmend.deploys.mail)."""

from mailmend.deploys.mail import mail_deploy

mail_deploy()
