"""SPF merge, flattening and check over the sandbox's Knot and the real DNS engine (issue 15
items 5 and 6, issue 14's malformed domain): the records are published under
``spf-e2e.<zone>`` (no fleet name, so other tests' zones are untouched) and removed after."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator

import dns.query
import dns.rcode
import dns.rdata
import dns.update
import pytest

from mailmend.checks.engine import Engine, EngineConfig
from mailmend.checks.result import Status
from mailmend.checks.spf import Evaluation, check_spf, evaluate, parse_record
from mailmend.checks.txt import split_txt
from mailmend.records.spf import SpfProposal, propose_spf
from mailmend.records.tsig import load_key_file
from sandbox.control import Sandbox
from tests.e2e.test_records_publish import server

pytestmark = pytest.mark.end_to_end

REFUSED = "198.51.100.200"


@pytest.fixture(scope="module")
def names(sandbox: Sandbox) -> Iterator[dict[str, str]]:
    zone = sandbox.hosts()[0].domain
    base = f"spf-e2e.{zone}"
    host_ip = sandbox.hosts()[0].public_ipv4
    out = {"zone": zone, "crm": f"_spf.crm.{base}", "flat": f"flat.{base}"}
    out |= {"deny": f"deny.{base}", "host": host_ip}
    records = {out["crm"]: f"v=spf1 -ip4:{REFUSED} ip4:198.51.100.128/25 -all"}
    fillers = [f"f{k}.{base}" for k in range(10)]
    records |= {name: f"v=spf1 ip4:192.0.2.{k} -all" for k, name in enumerate(fillers)}
    includes = " ".join(f"include:{n}" for n in [out["crm"], *fillers])
    records[out["flat"]] = f"v=spf1 {includes} -all"
    records[out["deny"]] = f"v=spf1 -ip4:{host_ip} include:{out['crm']} -all"
    key = load_key_file(sandbox.dns.tsig_file)
    update = dns.update.UpdateMessage(zone, keyring=key.key(), keyname=key.key().name)
    for name, value in records.items():  # the long record in 255-byte strings
        text = " ".join(f'"{part}"' for part in split_txt(value))
        update.replace(name + ".", 60, dns.rdata.from_text("IN", "TXT", text))
    assert dns.query.tcp(update, sandbox.net.dns, timeout=5).rcode() == dns.rcode.NOERROR
    yield out
    update = dns.update.UpdateMessage(zone, keyring=key.key(), keyname=key.key().name)
    for name in records:
        update.delete(name + ".")
    assert dns.query.tcp(update, sandbox.net.dns, timeout=5).rcode() == dns.rcode.NOERROR


def run_engine(sb: Sandbox, name: str, ips: list[str], probes: list[str]) -> tuple[
    SpfProposal, dict[str, str]
]:  # fmt: skip
    """The proposal for ``name`` and the result it gives each probe, over the real engine."""

    async def go() -> tuple[SpfProposal, dict[str, str]]:
        async with Engine(EngineConfig(nameservers=(server(sb),), timeout=2)) as engine:
            answer = await engine.query(name + ".", "TXT")
            proposal = await propose_spf(engine, name, ips, answer)
            assert proposal.value is not None, proposal.problem
            record = parse_record(proposal.value, name)
            results: dict[str, str] = {}
            for ip in probes:
                ev = Evaluation(engine, ipaddress.ip_address(ip))
                found = await evaluate(ev, name, record)
                results[ip] = found.result if found else "neutral"
            return proposal, results

    return asyncio.run(go())


def test_flattened_proposal_still_refuses_what_the_include_refused(
    sandbox: Sandbox, names: dict[str, str]
) -> None:
    probes = [REFUSED, "198.51.100.201", "198.51.100.128", "192.0.2.9", names["host"]]
    proposal, results = run_engine(sandbox, names["flat"], [names["host"]], probes)
    assert proposal.flattened and proposal.lookups == 0
    assert results == {
        REFUSED: "fail",
        "198.51.100.201": "pass",
        "198.51.100.128": "pass",
        "192.0.2.9": "pass",
        names["host"]: "pass",
    }


def test_merge_leaves_a_refused_host_to_the_admin(sandbox: Sandbox, names: dict[str, str]) -> None:
    host = names["host"]
    proposal, results = run_engine(sandbox, names["deny"], [host, "203.0.113.9"], [host])
    assert proposal.denied == {host: f"-ip4:{host}"}
    assert f"ip4:{host} " not in (proposal.value or "").replace(f"-ip4:{host}", "")
    assert proposal.added == ("ip4:203.0.113.9",)
    assert results[host] == "fail"
    assert any("remove that term" in n for n in proposal.notes)


def test_check_on_a_malformed_domain_is_a_result_not_a_traceback(sandbox: Sandbox) -> None:
    async def go() -> Status:
        async with Engine(EngineConfig(nameservers=(server(sandbox),), timeout=2)) as engine:
            result = await check_spf(engine, "a" * 64 + ".example", ["192.0.2.1"])
            return result.status

    assert asyncio.run(go()) is Status.FAIL
