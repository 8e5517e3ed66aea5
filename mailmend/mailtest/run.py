"""Send on each host, find in the mailbox, judge: every host in parallel.

One task per (host, domain): submit over SSH through the host's own Postfix (``sendmail
-t -i -f SENDER``: signed by its OpenDKIM, paced with the rest of its mail), then poll the
mailbox over IMAPS (one connection per task) for the token until ``timeout``, fetch, delete
unless ``keep``, and judge. A message that never arrives is ``unknown``, with what the
host's queue says about it.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import imapclient
import imapclient.exceptions

from mailmend import imap
from mailmend.checks.dns import Resolver
from mailmend.checks.result import CheckResult, Status, worst
from mailmend.fleet import HostSpec
from mailmend.hygiene.queue import QueueParseError, parse_queue
from mailmend.mailtest import content, headers, received, verdict
from mailmend.mailtest.message import TOKEN_HEADER, Outgoing, builtin_message, new_token, prepare
from mailmend.ssh import ssh_argv

POLL_INTERVAL = 2.0
SSH_TIMEOUT = 60.0


@dataclass(frozen=True)
class Mailbox:
    host: str
    port: int
    user: str
    password: str
    cafile: Path | None
    timeout: float = 30.0

    def connect(self) -> imapclient.IMAPClient:
        return imap.connect(
            self.host, self.port, self.user, self.password, cafile=self.cafile, timeout=self.timeout
        )

    def session(self, deadline: imap.Deadline) -> AbstractContextManager[imap.Bounded]:
        """Logged in; every wait (each at most :attr:`timeout`) ends by ``deadline``."""
        return imap.session(
            self.host, self.port, self.user, self.password, cafile=self.cafile,
            timeout=self.timeout, deadline=deadline,
        )  # fmt: skip


@dataclass
class MessageReport:
    host: str
    fqdn: str
    domain: str
    token: str
    to: str
    sender: str
    arrived: bool = False
    folder: str | None = None
    folder_kind: str | None = None
    delay: float | None = None
    size: int | None = None
    deleted: bool = False
    results: list[CheckResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        return worst([r.status for r in self.results])


@dataclass(frozen=True)
class Job:
    spec: HostSpec
    domain: str
    selector: str


async def run_all(
    jobs: Sequence[Job],
    mailbox: Mailbox,
    to: str,
    resolver: Resolver,
    *,
    message: EmailMessage | None,
    timeout: float,
    keep: bool,
    report_address: str | None,
    progress: Callable[[str], None] | None = None,
) -> list[MessageReport]:
    # Each message holds a thread while it waits (SSH, IMAP polling): one thread per message
    # and its judging, or hosts would queue behind the default pool (cores + 4 threads).
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=2 * len(jobs) + 2, thread_name_prefix="mail-test")
    loop.set_default_executor(pool)
    tasks = [
        _one(job, mailbox, to, resolver, message, timeout, keep, report_address, progress)
        for job in jobs
    ]
    return list(await asyncio.gather(*tasks))


async def _one(
    job: Job,
    mailbox: Mailbox,
    to: str,
    resolver: Resolver,
    message: EmailMessage | None,
    timeout: float,
    keep: bool,
    report_address: str | None,
    progress: Callable[[str], None] | None,
) -> MessageReport:
    spec, token = job.spec, new_token()
    fallback = f"mailmend-test@{job.domain}"
    msg = message or builtin_message(fallback, to, job.domain, token)
    out = prepare(msg, to, token, fallback)
    rep = MessageReport(spec.name, spec.hostname, job.domain, token, to, out.sender)
    started = time.monotonic()
    error = await asyncio.to_thread(_submit, spec, out)
    submitted = time.monotonic()
    rep.timings["submit"] = round(submitted - started, 2)
    if error:
        rep.results.append(
            CheckResult(
                "delivery",
                Status.UNKNOWN,
                spec.name,
                f"could not submit on {spec.name}: {error}",
                fix="check that mailmend can reach the host over SSH (mailmend check, pyinfra)",
            )
        )
        return rep
    if progress:
        progress(f"{spec.name}: submitted {token} for {job.domain}, waiting for it in the mailbox")
    deadline = imap.Deadline(timeout, "--timeout", start=submitted)
    found = await asyncio.to_thread(_wait, mailbox, token, deadline, keep)
    rep.timings["wait"] = round(time.monotonic() - submitted, 2)
    if found is None or isinstance(found, str):
        queue = await asyncio.to_thread(_queue_note, spec, to)
        rep.results.append(
            CheckResult(
                "delivery",
                Status.UNKNOWN,
                to,
                f"not in the mailbox after {timeout:g} s" if not found else found,
                details=(queue,) if queue else (),
                fix="read the host's queue (mailmend queue) for why it waits; "
                "rerun with a longer --timeout",
            )
        )
        return rep
    raw, folder, kind, arrived_at, deleted = found
    rep.arrived, rep.folder, rep.folder_kind, rep.deleted = True, folder, kind, deleted
    rep.delay = round(arrived_at - submitted, 1)
    rep.size = len(raw)
    t0 = time.monotonic()
    rep.results.extend(
        await judge(raw, kind, folder, spec.hostname, rep.delay, resolver, report_address)
    )
    rep.timings["judge"] = round(time.monotonic() - t0, 2)
    return rep


async def judge(
    raw: bytes,
    kind: str,
    folder: str,
    fqdn: str,
    delay: float | None,
    resolver: Resolver,
    report_address: str | None,
) -> list[CheckResult]:
    """Every result for one received message (receiver's and mailmend's)."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    the_hop = received.hop(msg)
    own = await verdict.own_verdict(resolver, raw, msg, the_hop)
    results = [content.folder_result(kind, folder)]
    results += await verdict.auth_checks(
        resolver, own, received.auth_results(msg), the_hop.ip if the_hop else None, report_address
    )
    results += content.hop_results(the_hop, fqdn, delay)
    results.append(content.receiver_spam(received.spam_verdict(msg)))
    local = await asyncio.to_thread(content.local_spamassassin, raw)
    if local is not None:
        results.append(local)
    results += headers.header_results(msg, len(raw))
    return results


def _submit(spec: HostSpec, out: Outgoing) -> str | None:
    words = ["/usr/sbin/sendmail", "-t", "-i", "-f", out.sender]
    argv = ssh_argv(spec, " ".join(shlex.quote(w) for w in words))
    try:
        done = subprocess.run(
            argv, input=out.data, capture_output=True, timeout=SSH_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return f"no answer within {SSH_TIMEOUT:g} s"
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return f"exit {done.returncode}: {err[-1] if err else 'no message'}"
    return None


Found = tuple[bytes, str, str, float, bool]


def _wait(mailbox: Mailbox, token: str, deadline: imap.Deadline, keep: bool) -> Found | str | None:
    """The message with ``token`` (raw, folder, kind, arrival time, deleted), or None when it
    never came, or an error text. Every IMAP wait ends by ``deadline`` (--timeout)."""
    try:
        with mailbox.session(deadline) as client:
            while True:
                hits = imap.search_folders(
                    client, ["HEADER", TOKEN_HEADER, token], ("inbox", "junk", "other")
                )
                if hits:
                    arrived = time.monotonic()
                    folder, kind, uid = hits[0]
                    client.select_folder(folder, readonly=keep)
                    data = client.fetch([uid], ["BODY.PEEK[]"])
                    raw = bytes(data[uid][b"BODY[]"])
                    deleted = False if keep else remove(client, uid)
                    return raw, folder, kind, arrived, deleted
                if deadline.left() < POLL_INTERVAL:
                    return None
                time.sleep(POLL_INTERVAL)
    except imap.ImapError as err:
        return str(err)
    except (OSError, imapclient.exceptions.IMAPClientError) as err:
        return f"IMAP: {err}"


def remove(client: imapclient.IMAPClient | imap.Bounded, uid: int) -> bool:
    """Delete the test message and only it: ``UID EXPUNGE`` (RFC 4315). A plain EXPUNGE would
    also purge whatever else the mailbox's owner had flagged deleted in that folder, so
    without UIDPLUS the message is only flagged (False: not removed)."""
    client.delete_messages([uid])
    if not client.has_capability("UIDPLUS"):
        return False
    client.uid_expunge([uid])
    return True


def _queue_note(spec: HostSpec, to: str) -> str | None:
    """What the host's queue says about mail to ``to`` (``postqueue -j``), if anything."""
    try:
        done = subprocess.run(
            ssh_argv(spec, "postqueue -j"), capture_output=True, timeout=SSH_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return None
    try:
        queued = parse_queue(done.stdout.decode("utf-8", "replace").splitlines())
    except QueueParseError:
        return None
    for entry in queued:
        for rcpt in entry.recipients:
            if rcpt.address.lower() == to.lower():
                reason = rcpt.delay_reason.strip()
                return f"still in {spec.name}'s queue ({entry.queue_name}): {reason}"
    return None
