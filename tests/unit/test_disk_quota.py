"""When a build's writes are measured, and what stops it (orchestrator.core.disk_quota)."""

from __future__ import annotations

from orchestrator.core.disk_quota import MAX_INTERVAL, MIN_INTERVAL, DiskQuota, size_text

GB = 1 << 30


def test_a_build_past_its_quota_is_stopped_with_the_quota_named() -> None:
    quota = DiskQuota(2 * GB)
    assert quota.due(0.0)
    assert quota.observe([GB, 2 * GB + 1], now=0.0) == "wrote more than 2 GB (a build's disk quota)"


def test_far_from_the_quota_it_is_measured_seldom_and_near_it_often() -> None:
    quota = DiskQuota(20 * GB)
    assert quota.observe([0], now=100.0) is None
    assert quota.next_at == 100.0 + MAX_INTERVAL
    assert not quota.due(105.0) and quota.due(110.0)
    assert quota.observe([20 * GB - 1], now=110.0) is None
    assert quota.next_at == 110.0 + MIN_INTERVAL


def test_no_quota_is_never_measured() -> None:
    assert not DiskQuota(0).due(10**9)


def test_the_largest_write_seen_is_kept_for_the_log() -> None:
    quota = DiskQuota(2 * GB)
    quota.observe([5], 0.0)
    quota.observe([3], 20.0)
    assert quota.largest == 5


def test_sizes_read_as_people_write_them() -> None:
    assert (size_text(2 * GB), size_text(512 << 20), size_text(1536 << 20)) == ("2 GB", "512 MB", "1536 MB")
