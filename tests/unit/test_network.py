from orchestrator.adapters import network
from orchestrator.config import Settings
from orchestrator.core import defaults


def test_registry_host_is_resolved_on_the_host(monkeypatch, tmp_path):
    monkeypatch.setattr(network, "resolve_ipv4", {"npm.corp.example": "10.1.2.3"}.get)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    access = network.registry_access(Settings(npm_registry="https://npm.corp.example/repo/", ca_bundle=ca))
    assert access.extra_hosts == {"npm.corp.example": "10.1.2.3"}
    assert access.env["npm_config_registry"] == "https://npm.corp.example/repo/"
    # every tool asks the same registry: yarn has settings of its own
    assert access.env["YARN_REGISTRY"] == "https://npm.corp.example/repo/"
    assert access.env["YARN_NPM_REGISTRY_SERVER"] == "https://npm.corp.example/repo"
    assert access.env["NODE_EXTRA_CA_CERTS"] == defaults.CONTAINER_CA_PATH
    assert access.ca_bundle == ca.read_bytes()


def test_proxy_is_passed_on_and_resolved(monkeypatch):
    monkeypatch.setattr(network, "resolve_ipv4", {"proxy.corp": "10.0.0.9"}.get)
    access = network.registry_access(
        Settings(
            npm_registry="https://registry.example.com/",
            https_proxy="http://proxy.corp:3128",
            no_proxy="localhost",
            ca_bundle=None,
        )
    )
    assert access.extra_hosts == {"proxy.corp": "10.0.0.9"}
    assert access.env["HTTPS_PROXY"] == access.env["https_proxy"] == "http://proxy.corp:3128"
    assert access.env["npm_config_https-proxy"] == "http://proxy.corp:3128"
    assert access.env["NO_PROXY"] == "localhost"
    assert "NODE_EXTRA_CA_CERTS" not in access.env


def test_addresses_and_unresolvable_names_add_no_extra_host(monkeypatch):
    monkeypatch.setattr(network, "resolve_ipv4", lambda host: None)
    assert (
        network.registry_access(Settings(npm_registry="http://10.0.0.5:4873/", ca_bundle=None)).extra_hosts
        == {}
    )
    assert (
        network.registry_access(Settings(npm_registry="https://nowhere.invalid/", ca_bundle=None)).extra_hosts
        == {}
    )


def test_an_unreadable_ca_bundle_is_reported_not_fatal(tmp_path):
    access = network.registry_access(
        Settings(npm_registry="http://10.0.0.5/", ca_bundle=tmp_path / "missing.pem")
    )
    assert access.ca_bundle is None
    assert any("not readable" in note for note in access.notes)
