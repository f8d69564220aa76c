"""Known-vulnerable Vite releases are refused, with the advisories and the release to upgrade to."""

from __future__ import annotations

import json

from orchestrator.core.advisories import locked_vite, pinned_vite, refusal


def test_a_vite_with_file_read_holes_is_refused_naming_them_and_the_release_past_all_of_them() -> None:
    found = refusal("6.2.0")
    assert found is not None and found.upgrade_to == "6.3.6"
    ids = [a.cve for a in found.advisories]
    assert {"CVE-2025-30208", "CVE-2025-31125", "CVE-2025-46565"} <= set(ids)
    assert found.message.startswith("Vite 6.2.0 has published security holes in its development server")
    assert "Upgrade Vite to 6.3.6 or newer (npm install vite@6.3.6)" in found.message


def test_each_line_upgrades_within_itself_when_it_can() -> None:
    assert refusal("5.4.14").upgrade_to == "5.4.20"  # type: ignore[union-attr]
    assert refusal("7.1.4").upgrade_to == "7.1.5"  # type: ignore[union-attr]
    assert refusal("4.2.0").upgrade_to == "5.4.20"  # type: ignore[union-attr]  # 4.x has no fix for all


def test_patched_and_newer_releases_pass() -> None:
    for version in ("5.4.21", "6.3.6", "7.0.7", "7.1.5", "8.0.0", "8.0.0-beta.3"):
        assert refusal(version) is None, version


def test_a_pre_release_comes_before_its_release() -> None:
    assert refusal("6.2.3-beta.1") is not None and refusal("6.2.3") is not None  # 6.2.3 fixes only one
    assert refusal("7.1.5-beta.0") is not None and refusal("7.1.5") is None


def test_what_is_not_a_version_is_not_judged() -> None:
    assert refusal("^6.2.0") is None and refusal("latest") is None


def test_the_version_an_npm_lockfile_or_an_exact_pin_names() -> None:
    lock = json.dumps({"packages": {"": {}, "node_modules/vite": {"version": "6.2.0"}}})
    assert locked_vite("package-lock.json", lock) == "6.2.0"
    assert locked_vite("pnpm-lock.yaml", "vite: 6.2.0") is None  # read after the install instead
    assert locked_vite("package-lock.json", "{not json") is None
    assert pinned_vite({"devDependencies": {"vite": "6.2.0"}}) == "6.2.0"
    assert pinned_vite({"devDependencies": {"vite": "=6.2.0"}}) == "6.2.0"
    assert pinned_vite({"devDependencies": {"vite": "^6.2.0"}}) is None
