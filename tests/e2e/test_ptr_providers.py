"""``mailmend ptr`` end to end: the official clients against local stand-ins of the VPS
provider APIs (tests/providers_standin/, sources cited there), the new PTR published in the
sandbox's Knot by the stand-in, and verified by mailmend in DNS.

The sandbox's mx2 has no PTR (default scenario); each test starts from that.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.reversename
import dns.update
import pytest

from mailmend.records.tsig import load_key_file
from sandbox.control import Sandbox
from sandbox.dns import reverse_zone
from sandbox.scenario import SandboxHost
from tests.conftest import CLI_ENV, MAILMEND
from tests.providers_standin import Machine, StandIn
from tests.providers_standin.hetzner import HetznerStandIn
from tests.providers_standin.hostinger import HostingerStandIn
from tests.providers_standin.linode import LinodeStandIn
from tests.providers_standin.ovh import OvhStandIn
from tests.providers_standin.vultr import VultrStandIn

pytestmark = pytest.mark.end_to_end

STANDINS: dict[str, type[StandIn]] = {
    "hostinger": HostingerStandIn,
    "hetzner": HetznerStandIn,
    "linode": LinodeStandIn,
    "ovh": OvhStandIn,
    "vultr": VultrStandIn,
}
TOKEN = {p: f"{p}-token-{'s3cr3t' * 4}" for p in STANDINS}
TOKEN["ovh"] = "app-key-1:app-secret-" + "x" * 20 + ":consumer-key-" + "y" * 20
#: What each provider's documented call looks like: method, path.
CALL = {
    "hostinger": ("POST", "/api/vps/v1/virtual-machines/1002/ptr/77"),
    "hetzner": ("POST", "/v1/servers/1002/actions/change_dns_ptr"),
    "linode": ("PUT", "/v4/networking/ips/{ip}"),
    "ovh": ("POST", "/1.0/ip/{ip}%2F32/reverse"),
    "vultr": ("POST", "/v2/instances/1002/ipv4/reverse"),
}


def mx2(sb: Sandbox) -> SandboxHost:
    return sb.hosts()[1]


def ptr(sb: Sandbox, ip: str) -> list[str]:
    query = dns.message.make_query(dns.reversename.from_address(ip), "PTR")
    reply = dns.query.udp(query, sb.net.dns, timeout=3)
    return [rd.to_text() for rr in reply.answer for rd in rr]


def clear_ptr(sb: Sandbox, ip: str) -> None:
    key = load_key_file(sb.dns.tsig_file)
    zone = reverse_zone(ip.rsplit(".", 1)[0])
    update = dns.update.UpdateMessage(zone + ".", keyring=key.key(), keyname=key.key().name)
    update.delete(dns.reversename.from_address(ip), "PTR")
    assert dns.query.tcp(update, sb.net.dns, timeout=5).rcode() == dns.rcode.NOERROR


@pytest.fixture
def fresh(sandbox: Sandbox) -> Iterator[SandboxHost]:
    host = mx2(sandbox)
    clear_ptr(sandbox, host.public_ipv4)
    yield host
    clear_ptr(sandbox, host.public_ipv4)


def standin(sb: Sandbox, provider: str, *, machines: bool = True, **kw: object) -> StandIn:
    host = mx2(sb)
    found = [Machine(1002, host.name, host.public_ipv4, ip_id=77)] if machines else []
    return STANDINS[provider](sb, found, TOKEN[provider], **kw)  # type: ignore[arg-type]


def run_ptr(
    sb: Sandbox,
    tmp: Path,
    provider: str,
    url: str,
    *extra: str,
    token: str | None = None,
    hostname: str | None = None,
) -> subprocess.CompletedProcess[str]:
    keys: dict[str, object] = {"vps_provider": provider, "vps_credentials": "env:VPS_TOKEN",
                               "vps_endpoint": url}  # fmt: skip
    text = sb.fleet_text(hosts={"mx2": keys})
    if hostname:
        text = text.replace(f'hostname = "{mx2(sb).fqdn}"', f'hostname = "{hostname}"')
    fleet = tmp / "fleet.toml"
    fleet.write_text(text)
    argv = [str(MAILMEND), "ptr", "--fleet", str(fleet), "--host", "mx2", "--wait", "5"]
    env = {**CLI_ENV, "VPS_TOKEN": token or TOKEN[provider]}
    return subprocess.run(
        [*argv, *extra], capture_output=True, text=True, timeout=120, env=env, check=False
    )


@pytest.mark.parametrize("provider", sorted(STANDINS))
def test_plan_then_apply_sets_the_ptr_and_dns_shows_it(
    sandbox: Sandbox, fresh: SandboxHost, tmp_path: Path, provider: str
) -> None:
    api = standin(sandbox, provider)
    try:
        plan = run_ptr(sandbox, tmp_path, provider, api.url)
        assert plan.returncode == 0, plan.stderr
        want = f"PTR (none) -> {fresh.fqdn} (via {provider})"
        assert f"set      mx2          {fresh.public_ipv4:<16} {want}" in plan.stdout
        assert "dry run: 1 PTR(s) not set; add --apply" in plan.stderr
        assert not [r for r in api.requests if r.method != "GET"]  # a plan changes nothing
        done = run_ptr(sandbox, tmp_path, provider, api.url, "--apply", "--debug")
        assert done.returncode == 0, done.stderr
        assert (
            f"mailmend ptr: mx2 {fresh.public_ipv4}: PTR set to {fresh.fqdn} through {provider}, "
            "seen in DNS (FCrDNS holds)"
        ) in done.stderr
        assert ptr(sandbox, fresh.public_ipv4) == [fresh.fqdn + "."]
        method, path = CALL[provider]
        calls = [(r.method, r.path) for r in api.requests]
        assert (method, path.format(ip=fresh.public_ipv4)) in calls, calls
        for secret in TOKEN[provider].split(":"):
            assert secret not in done.stdout + done.stderr  # --debug included
        again = run_ptr(sandbox, tmp_path, provider, api.url, "--apply")
        assert again.returncode == 0 and "nothing to set" in again.stderr
        assert "keep     mx2" in again.stdout
    finally:
        api.close()


def test_json_gives_the_plan_and_each_outcome(
    sandbox: Sandbox, fresh: SandboxHost, tmp_path: Path
) -> None:
    """--format json: stdout is one document (every PTR of the fleet, the outcome where one
    was set, the exit code); the one-line messages stay on stderr."""
    api = standin(sandbox, "hostinger")
    try:
        plan = run_ptr(sandbox, tmp_path, "hostinger", api.url, "--format", "json")
        done = run_ptr(sandbox, tmp_path, "hostinger", api.url, "--apply", "--format", "json")
    finally:
        api.close()
    before = json.loads(plan.stdout)
    (entry,) = before["ptrs"]  # --host mx2
    assert entry == {
        "host": "mx2", "ip": fresh.public_ipv4, "fqdn": fresh.fqdn, "provider": "hostinger",
        "current": [], "state": "set", "note": None, "result": None, "message": None,
        "done_at_provider": False,
    }  # fmt: skip
    assert (before["apply"], before["exit"], plan.returncode) == (False, 0, 0)
    after = json.loads(done.stdout)
    (entry,) = after["ptrs"]
    assert (entry["result"], entry["done_at_provider"], after["exit"]) == ("done", True, 0)
    assert entry["message"] == (
        f"mx2 {fresh.public_ipv4}: PTR set to {fresh.fqdn} through hostinger, seen in DNS "
        "(FCrDNS holds)"
    )
    assert done.returncode == 0 and TOKEN["hostinger"] not in done.stdout
    assert ptr(sandbox, fresh.public_ipv4) == [fresh.fqdn + "."]


@pytest.mark.parametrize("provider", sorted(STANDINS))
def test_wrong_token_is_one_line_and_nothing_changes(
    sandbox: Sandbox, fresh: SandboxHost, tmp_path: Path, provider: str
) -> None:
    api = standin(sandbox, provider)
    wrong = "wrong:wrong:wrong" if provider == "ovh" else "wrong-token-0123456789"
    try:
        done = run_ptr(sandbox, tmp_path, provider, api.url, "--apply", token=wrong)
    finally:
        api.close()
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"mailmend ptr: mx2 {fresh.public_ipv4}: {provider}: ")
    assert "the provider refused the credentials (HTTP 40" in line and line.endswith(
        ": not changed"
    )
    assert "wrong-token" not in done.stderr
    assert ptr(sandbox, fresh.public_ipv4) == []


@pytest.mark.parametrize("provider", sorted(STANDINS))
def test_server_not_found_by_its_ip(
    sandbox: Sandbox, fresh: SandboxHost, tmp_path: Path, provider: str
) -> None:
    api = standin(sandbox, provider, machines=False)
    try:
        done = run_ptr(sandbox, tmp_path, provider, api.url, "--apply")
    finally:
        api.close()
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"mailmend ptr: mx2 {fresh.public_ipv4}: {provider}: no server with the IP "
        f"{fresh.public_ipv4} in this account: not changed"
    ]


FAILURES = {
    "outage": "provider outage (HTTP 5",
    "rate_limit": "rate limited by the provider (HTTP 429); try again later: not changed",
}


@pytest.mark.parametrize(
    ("provider", "mode"),
    [(p, "outage") for p in sorted(STANDINS)]
    # hcloud retries rate_limit_exceeded itself, 5 times over about 30 s: not run here.
    + [(p, "rate_limit") for p in sorted(STANDINS) if p != "hetzner"],
)
def test_outage_and_rate_limit_are_one_line(
    sandbox: Sandbox, fresh: SandboxHost, tmp_path: Path, provider: str, mode: str
) -> None:
    api = standin(sandbox, provider, mode=mode)
    try:
        done = run_ptr(sandbox, tmp_path, provider, api.url, "--apply")
    finally:
        api.close()
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert FAILURES[mode] in line and line.endswith("try again later: not changed"), line
    assert ptr(sandbox, fresh.public_ipv4) == []


def test_accepted_but_not_in_dns_is_pending_exit_3(
    sandbox: Sandbox, fresh: SandboxHost, tmp_path: Path
) -> None:
    api = standin(sandbox, "vultr", never_publish=True)
    try:
        done = run_ptr(sandbox, tmp_path, "vultr", api.url, "--apply")
    finally:
        api.close()
    assert done.returncode == 3, done.stderr
    assert done.stderr.splitlines() == [
        f"mailmend ptr: mx2 {fresh.public_ipv4}: accepted by vultr but not in DNS after 5s: "
        "pending at the provider (some take hours); run mailmend ptr again later to check"
    ]


@pytest.mark.parametrize("provider", ["linode", "ovh"])
def test_missing_forward_record_blocks_before_any_call(
    sandbox: Sandbox, fresh: SandboxHost, tmp_path: Path, provider: str
) -> None:
    api = standin(sandbox, provider)
    name = f"mail-new.{fresh.domain}"  # no A record
    try:
        done = run_ptr(sandbox, tmp_path, provider, api.url, "--apply", hostname=name)
    finally:
        api.close()
    assert done.returncode == 1
    assert "blocked  mx2" in done.stdout and f"{name} resolves to nothing" in done.stdout
    assert "nothing set: 1 PTR(s) need you first" in done.stderr
    assert api.requests == []


def test_the_stand_ins_refuse_an_rdns_without_its_forward_record(sandbox: Sandbox) -> None:
    """Linode's documented rule, enforced by its stand-in (what mailmend's check prevents)."""
    from linode_api4 import IPAddress, LinodeClient
    from linode_api4.errors import ApiError

    api = standin(sandbox, "linode")
    try:
        client = LinodeClient(TOKEN["linode"], base_url=api.url)
        address = client.load(IPAddress, mx2(sandbox).public_ipv4)
        address.rdns = f"nowhere.{mx2(sandbox).domain}"
        with pytest.raises(ApiError) as err:
            address.save()
    finally:
        api.close()
    assert err.value.status == 400 and "does not resolve" in err.value.errors[0]


def test_digitalocean_renames_the_droplet_only_with_the_flag(
    sandbox: Sandbox, fresh: SandboxHost, tmp_path: Path
) -> None:
    from tests.providers_standin.digitalocean import DigitalOceanStandIn

    droplet = Machine(1002, "ubuntu-s-1vcpu-1gb-fra1-01", fresh.public_ipv4)
    api = DigitalOceanStandIn(sandbox, [droplet], "do-token-" + "z" * 20)
    try:
        plain = run_ptr(sandbox, tmp_path, "digitalocean", api.url, "--apply", token=api.token)
        assert plain.returncode == 1
        assert "rename   mx2" in plain.stdout and "--rename-droplet does it" in plain.stdout
        assert "nothing set: 1 PTR(s) need you first" in plain.stderr
        assert [r.method for r in api.requests] == []  # no call without the flag
        done = run_ptr(
            sandbox, tmp_path, "digitalocean", api.url, "--apply", "--rename-droplet",
            token=api.token,
        )  # fmt: skip
    finally:
        api.close()
    assert done.returncode == 0, done.stderr
    assert f"droplet renamed to {fresh.fqdn}; its PTR follows, seen in DNS" in done.stderr
    assert ("POST", "/v2/droplets/1002/actions") in [(r.method, r.path) for r in api.requests]
    assert droplet.name == fresh.fqdn and ptr(sandbox, fresh.public_ipv4) == [fresh.fqdn + "."]
