"""What a fleet must publish in DNS (SPF, DKIM, DMARC, A/AAAA; PTR to ask for) and publishing it.

* :mod:`mailmend.records.spf`, :mod:`~mailmend.records.dkim`, :mod:`~mailmend.records.dmarc`:
  the desired record of one kind, given what is published now.
* :mod:`mailmend.records.plan`: desired vs published for the whole fleet -> add / change / keep,
  rendered as a plan, a BIND zone snippet or JSON.
* :mod:`mailmend.records.publish`: the changes as one RFC 2136 update per zone, TSIG-signed,
  guarded by prerequisites, then verified.
* :mod:`mailmend.records.tsig`: the TSIG key file.
* :mod:`mailmend.records.escape`: text read from DNS made safe for a terminal and a zone file.

Everything here returns data; ``mailmend.cli.records`` prints.
"""
