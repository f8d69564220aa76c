"""The rules of registry-only egress (orchestrator.core.egress), before any firewall sees them."""

from __future__ import annotations

from orchestrator.core.egress import Destination, allowed_destinations, chain_name, restore_script


def test_the_registry_and_proxy_are_allowed_at_their_resolved_addresses_and_ports() -> None:
    urls = ("https://registry.example.com/", "http://proxy.example.com:3128", None)
    resolved = {"registry.example.com": "198.51.100.7", "proxy.example.com": "198.51.100.8"}
    assert allowed_destinations(urls, resolved) == [
        Destination("198.51.100.7", 443),
        Destination("198.51.100.8", 3128),
    ]


def test_an_address_is_taken_as_it_is_and_an_unresolved_name_allows_nothing() -> None:
    urls = ("http://192.0.2.10:4873/", "https://unknown.example.com/", "http://[2001:db8::1]:8080/")
    assert allowed_destinations(urls, {}) == [Destination("192.0.2.10", 4873)]


def test_one_destination_named_twice_is_allowed_once() -> None:
    urls = ("https://registry.example.com/", "https://registry.example.com/npm/")
    assert allowed_destinations(urls, {"registry.example.com": "198.51.100.7"}) == [
        Destination("198.51.100.7", 443)
    ]


def test_the_chain_lets_replies_and_allowed_connections_pass_and_refuses_the_rest() -> None:
    script = restore_script("WOB0-EGRESS", [Destination("198.51.100.7", 443)])
    assert script.splitlines() == [
        "*filter",
        ":WOB0-EGRESS - [0:0]",
        "-A WOB0-EGRESS -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        "-A WOB0-EGRESS -d 198.51.100.7/32 -p tcp -m tcp --dport 443 -j RETURN",
        "-A WOB0-EGRESS -p tcp -j REJECT --reject-with tcp-reset",
        "-A WOB0-EGRESS -j REJECT --reject-with icmp-admin-prohibited",
        "COMMIT",
    ]


def test_ipv6_allows_nothing_new() -> None:
    script = restore_script("WOB0-EGRESS", [Destination("198.51.100.7", 443)], ipv6=True)
    assert "198.51.100.7" not in script and "icmp6-adm-prohibited" in script
    assert script.count("RETURN") == 1  # replies only


def test_a_chain_name_fits_iptables() -> None:
    assert chain_name("wob0") == "WOB0-EGRESS"
    assert len(chain_name("a-very-long-bridge-name-indeed")) <= 28
