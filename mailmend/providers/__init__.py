"""Where the admin's DNS and VPS live: provider APIs.

* :mod:`mailmend.providers.dns` publishes a ``mailmend records`` plan through a DNS provider's
  API (dns-lexicon; Hostinger through its own client in :mod:`mailmend.providers.hostinger_dns`),
  with the guarantees of the RFC 2136 path where the API allows them.
* :mod:`mailmend.providers.vps` and :mod:`mailmend.providers.ptr` set each host's reverse DNS
  (PTR) through its VPS provider's API and check it in DNS (``mailmend ptr``).
* :mod:`mailmend.providers.secrets` resolves credentials given by reference and keeps them out
  of every message and log line.

The provider libraries are an optional extra: ``pip install 'mailmend[providers]'``.
"""
