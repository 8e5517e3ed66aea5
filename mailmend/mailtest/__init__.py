"""``mailmend mail-test``: the receiving side's verdict on a real message from every host.

* :mod:`.message`: the test message (built in, or the admin's ``--message FILE.eml``) with
  its token; reading a ``.eml`` file as bad input, not a traceback.
* :mod:`.headers`: the header rules (Message-ID, Date, From/To, one-click unsubscribe, a
  text part beside HTML, size), shared by ``--lint`` and the verdict on a received message.
* :mod:`.received`: what the receiver wrote (Authentication-Results, the hop in Received,
  X-Spam-*), parsed from hostile text.
* :mod:`.verdict`: mailmend's own DKIM (dkimpy), SPF (:mod:`checks.spf`) and DMARC verdicts on
  the received bytes, and every result with its fix.
* :mod:`.content`: the receiver's spam score and rules; SpamAssassin's local score.
* :mod:`.run`: submit on each host over SSH, find the message over IMAPS, hosts in parallel.
* :mod:`.report`: table, JSON and HTML.
"""
