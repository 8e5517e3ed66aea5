"""pyinfra deploys of mailmend. ``from mailmend.deploys import mail_deploy`` in a deploy file
of your own runs the whole mail deploy; the component deploys are in the modules beside it."""

from __future__ import annotations

from typing import Any

__all__ = ["mail_deploy"]


def __getattr__(name: str) -> Any:  # lazy: the CLI imports deploy values without pyinfra ops
    if name == "mail_deploy":
        from mailmend.deploys.mail import mail_deploy

        return mail_deploy
    raise AttributeError(name)
