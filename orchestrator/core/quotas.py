"""What one user may hold at once: pure rules over counts (orchestrator.service.quotas counts).

A user past a quota gets QuotaExceeded (429) naming the limit and when to try again; an admin
is held to none of them. With a cap on each user's queued builds, no user can fill the waiting
set, so another user's build is always within reach of admission.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.core.exceptions import QuotaExceeded


@dataclass(frozen=True)
class Quotas:
    uploads_per_minute: int = 30
    queued_builds: int = 20
    """Builds waiting or in progress."""
    live_previews: int = 10
    """Websites with a live preview."""


@dataclass(frozen=True)
class Usage:
    uploads_last_minute: int
    oldest_upload_age: float
    """Seconds since the oldest of the last minute's uploads (when the next one is allowed)."""
    queued_builds: int


def check_upload(quotas: Quotas, usage: Usage) -> None:
    """May this user upload now? Raises QuotaExceeded if not."""
    if usage.uploads_last_minute >= quotas.uploads_per_minute:
        wait = max(1, int(60 - usage.oldest_upload_age) + 1)
        raise QuotaExceeded(
            f"at most {quotas.uploads_per_minute} uploads a minute per user: try again in {wait} s", wait
        )
    if usage.queued_builds >= quotas.queued_builds:
        raise QuotaExceeded(
            f"{usage.queued_builds} of your builds are waiting or in progress, the most a user may have: "
            "try again once one has finished, or cancel one",
            30,
        )


def check_previews(quotas: Quotas, live_elsewhere: int) -> None:
    """May this user's upload add a live preview, beside ``live_elsewhere`` on other websites?"""
    if live_elsewhere >= quotas.live_previews:
        raise QuotaExceeded(
            f"{live_elsewhere} of your websites have a live preview, the most a user may have: delete "
            "one, or upload a new version of one of them",
            60,
        )
