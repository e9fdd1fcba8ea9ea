"""`videobatch review --host`: the links it prints are ones a teammate (and this machine) can open."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from benchmarks.workloads import write_review_ledger
from pipeline.review.address import links, reachable_hosts
from tests.review.server_cli import Review

NAMED = ["127.0.1.1", "192.168.1.7", "fe80::1%eth0", "10.0.0.5", "2001:db8::5", "192.168.1.7", "::1"]


def test_every_interface_is_named_by_its_reachable_addresses_then_loopback():
    # No routing probe (a machine without a route): the hostname's addresses, loopback and link-local left out.
    assert reachable_hosts("0.0.0.0", probes=(), named=NAMED) == ["192.168.1.7", "10.0.0.5", "127.0.0.1"]
    assert reachable_hosts("::", probes=(), named=NAMED) == ["192.168.1.7", "10.0.0.5", "2001:db8::5", "::1"]
    assert reachable_hosts("0.0.0.0", probes=(), named=[]) == ["127.0.0.1"]  # nothing else: this machine only
    assert reachable_hosts("192.168.1.7", named=NAMED) == ["192.168.1.7"]  # a named host is its own link
    assert links("::", 8800, "?token=t")[-1] == "http://[::1]:8800/?token=t"


def test_the_primary_address_comes_first_and_is_not_loopback():
    hosts = reachable_hosts("0.0.0.0")
    assert hosts[-1] == "127.0.0.1"
    for host in hosts[:-1]:
        ip = ipaddress.ip_address(host)
        assert ip.version == 4 and not (ip.is_loopback or ip.is_unspecified or ip.is_link_local), hosts


def test_review_on_every_interface_prints_links_that_open_and_the_token_only_in_them(tmp_path):
    write_review_ledger(tmp_path, 3)
    server = Review(tmp_path, "--host", "0.0.0.0", "--run", "all")
    token = re.search(r"\?token=([\w-]+)$", server.link).group(1)
    assert "0.0.0.0" not in server.link
    first = urlsplit(server.link)
    opened = []
    for host in (first.hostname, "127.0.0.1"):
        server.host = host
        status, headers, _ = server.request("GET", f"/?token={token}")
        assert status == 303 and headers["Location"] == "/", host
        cookie = headers["Set-Cookie"].split(";")[0]
        status, _, text = server.request("GET", "/api/clips", headers={"Cookie": cookie})
        opened.append((host, status, text.count('"job_key"') >= 3))
    assert opened == [(first.hostname, 200, True), ("127.0.0.1", 200, True)]
    output = server.stop()
    printed = [line.strip() for line in output.splitlines()]
    assert printed[0] == f"review: http://{first.hostname}:{first.port}/?token={token}"
    assert f"on this machine: http://127.0.0.1:{first.port}/?token={token}" in printed
    assert all(line.endswith(f"/?token={token}") for line in printed if token in line)  # only ever in a link
    assert "share it only with reviewers" in output
