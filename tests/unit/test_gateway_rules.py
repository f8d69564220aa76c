"""The gateway's pure rules: host names, headers, cookies, who gets the waking page; share
link signatures; when previews sleep."""

from __future__ import annotations

import pytest

from orchestrator.core import sharing
from orchestrator.core.expiry import (
    Activity,
    Policy,
    StopReason,
    observe,
    reap_reason,
    sleep_reason,
    sleeper_reason,
)
from orchestrator.core.gateway import (
    Route,
    RouteKind,
    cookie_value,
    forwarded_headers,
    is_browser_navigation,
    response_headers,
    route_for,
    waking_page,
    without_cookie,
)

DOMAIN = "preview.example.com"
SITE, BUILD = "0" * 31 + "a", "b" * 32


@pytest.mark.parametrize(
    ("host", "route"),
    [
        (f"{SITE}.{DOMAIN}", Route(RouteKind.WEBSITE, SITE)),
        (f"{SITE}.{DOMAIN}:8800", Route(RouteKind.WEBSITE, SITE)),
        (f"{SITE.upper()}.{DOMAIN.upper()}.", Route(RouteKind.WEBSITE, SITE)),
        (f"{BUILD}.b.{DOMAIN}:8800", Route(RouteKind.BUILD, BUILD)),
        (DOMAIN, None),
        (f"evil.{SITE}.{DOMAIN}", None),
        (f"{SITE}.{DOMAIN}.attacker.example", None),
        (f"{SITE}.x.{DOMAIN}", None),
        ("not-hex.preview.example.com", None),
        ("[::1]:8800", None),
        ("", None),
        (None, None),
    ],
)
def test_a_host_name_names_a_website_a_build_or_nothing(host: str | None, route: Route | None) -> None:
    assert route_for(host, DOMAIN) == route


def test_forwarded_headers_drop_hop_by_hop_credentials_and_the_share_cookie() -> None:
    sent = [
        ("Host", f"{SITE}.{DOMAIN}"),
        ("Connection", "keep-alive"),
        ("Authorization", "Bearer wob_secret"),
        ("X-Forwarded-For", "forged"),
        ("Cookie", "theme=dark; wob_share=abc.0.sig; lang=en"),
        ("Accept", "text/html"),
    ]
    out = forwarded_headers(sent, "localhost:42000", f"{SITE}.{DOMAIN}", "127.0.0.1")
    assert ("Host", "localhost:42000") in out and ("Accept", "text/html") in out
    assert ("Cookie", "theme=dark; lang=en") in out
    assert ("X-Forwarded-For", "127.0.0.1") in out and ("X-Forwarded-Host", f"{SITE}.{DOMAIN}") in out
    names = [name.lower() for name, _ in out]
    assert "authorization" not in names and "connection" not in names and names.count("host") == 1
    assert forwarded_headers([("Cookie", "wob_share=x")], "h", "o", None) == [
        ("Host", "h"),
        ("X-Forwarded-Host", "o"),
        ("X-Forwarded-Proto", "http"),
    ]


def test_cookies_are_read_and_removed_by_name() -> None:
    assert cookie_value("a=1; wob_share=t.0.s", "wob_share") == "t.0.s"
    assert cookie_value("wob_shared=1", "wob_share") is None and cookie_value(None, "x") is None
    assert without_cookie("a=1; wob_share=x; b=2", "wob_share") == "a=1; b=2"
    assert response_headers([("Transfer-Encoding", "chunked"), ("Set-Cookie", "a=1")]) == [
        ("Set-Cookie", "a=1")
    ]


def test_only_a_browser_loading_a_page_gets_the_waking_page() -> None:
    page = {"accept": "text/html,application/xhtml+xml", "sec-fetch-mode": "navigate"}
    assert is_browser_navigation("GET", page)
    assert is_browser_navigation("GET", {"accept": "text/html"})  # an older browser
    assert not is_browser_navigation("POST", page)
    assert not is_browser_navigation("GET", {"accept": "*/*"})  # curl, a script's fetch
    assert not is_browser_navigation("GET", {**page, "sec-fetch-mode": "cors"})  # a page's own request
    assert not is_browser_navigation("GET", {**page, "upgrade": "websocket"})


def test_the_waking_page_reloads_itself_and_escapes_the_name() -> None:
    page = waking_page("<script>x</script>")
    assert '<meta http-equiv="refresh" content="1">' in page and "<script>x" not in page


SECRET = b"k" * 32


def test_a_share_token_opens_its_own_website_only_until_it_expires() -> None:
    token = sharing.sign(SECRET, SITE, "share1", 2000)
    assert sharing.verify(SECRET, SITE, token, now=1999) == sharing.ShareToken("share1", 2000)
    with pytest.raises(sharing.ShareRefused, match="expired"):
        sharing.verify(SECRET, SITE, token, now=2000)
    with pytest.raises(sharing.ShareRefused, match="not valid for this preview"):
        sharing.verify(SECRET, "another-site", token, now=0)
    with pytest.raises(sharing.ShareRefused, match="not valid for this preview"):
        sharing.verify(b"another key", SITE, token, now=0)
    longer = token.replace(".2000.", ".9999.")  # a later expiry written in by hand
    with pytest.raises(sharing.ShareRefused, match="not valid"):
        sharing.verify(SECRET, SITE, longer, now=0)
    for broken in ("", "share1", "share1.x.sig", "share1.0."):
        with pytest.raises(sharing.ShareRefused, match="not valid"):
            sharing.verify(SECRET, SITE, broken, now=0)
    forever = sharing.sign(SECRET, SITE, "share2", 0)
    assert sharing.verify(SECRET, SITE, forever, now=10**12).expires_at == 0


SLEEPY = Policy(idle_ttl=1800, max_age=86400, sleep_after=600, sleep_lifetime=7 * 86400)


def test_an_idle_preview_sleeps_instead_of_stopping() -> None:
    assert reap_reason(SLEEPY, age=100, idle=5000) is None  # not stopped: it sleeps
    assert sleep_reason(SLEEPY, age=100, idle=599) is None
    assert sleep_reason(SLEEPY, age=100, idle=600) == "no requests for 10 min (sleeps after 10 min)"
    assert sleep_reason(SLEEPY, age=86400, idle=0) == "awake for 24 h (awake at most 24 h)"
    assert reap_reason(SLEEPY, age=10, idle=1, website_deleted=True) is StopReason.DELETED
    shorter = Policy(idle_ttl=0, max_age=86400, sleep_after=600)  # gc --idle-ttl 0 still stops
    assert reap_reason(shorter, age=10, idle=1) is StopReason.IDLE
    never = Policy(idle_ttl=1800, max_age=86400)
    assert sleep_reason(never, age=10**6, idle=10**6) is None
    assert reap_reason(never, age=86400, idle=0) is StopReason.EXPIRED


def test_a_sleeper_is_kept_for_its_lifetime() -> None:
    assert sleeper_reason(SLEEPY, asleep=7 * 86400 - 1) is None
    assert sleeper_reason(SLEEPY, asleep=7 * 86400) is StopReason.SLEPT_OUT
    assert sleeper_reason(SLEEPY, asleep=1, website_deleted=True) is StopReason.DELETED


def test_the_gateways_last_request_counts_as_activity() -> None:
    before = Activity(10, 1000.0)
    assert observe(before, 10, now=2000.0, last_request=1500.0) == Activity(10, 1500.0)
    assert observe(before, 10, now=2000.0, last_request=900.0) == before
    assert observe(before, 10, now=2000.0, last_request=2500.0) == Activity(10, 2000.0)  # no future


def test_previews_are_protected_by_default_once_they_listen_beyond_loopback() -> None:
    from orchestrator.config import Settings

    def access(**values: str) -> str:
        return Settings(npm_registry="http://127.0.0.1:4873/", **values).default_preview_access  # type: ignore[arg-type]

    assert access() == "open"
    assert access(gateway_host="0.0.0.0") == "protected"
    assert access(preview_bind="0.0.0.0") == "protected"
    assert access(gateway_host="0.0.0.0", preview_access="open") == "open"
