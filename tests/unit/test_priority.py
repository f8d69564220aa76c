import itertools

from orchestrator.core.priority import base_priority, overtake_window, score


def test_roles_get_their_default_and_are_clamped():
    assert base_priority("admin", None) > base_priority("user", None)
    assert base_priority("user", 10) == 4
    assert base_priority("user", -3) == 0
    assert base_priority("admin", 10) == 10
    assert base_priority("stranger", None) == base_priority("user", None)


def test_a_new_build_starts_at_its_own_priority():
    # the seed's formula gives every build 0 at t=0; here a higher priority goes first at once
    assert score(100.0, 6, 30) < score(100.0, 2, 30)


def test_equal_priorities_keep_arrival_order():
    assert score(100.0, 2, 30) < score(100.5, 2, 30)


def test_no_later_build_overtakes_past_the_window():
    aging = 30.0
    window = overtake_window(aging)
    assert window == 300.0
    # every pair of priorities, arrivals on both sides of the window
    for p_early, p_late in itertools.product(range(11), repeat=2):
        early = score(0.0, p_early, aging)
        assert not score(window + 0.01, p_late, aging) < early
        if p_late > p_early:
            assert score((p_late - p_early) * aging - 0.01, p_late, aging) < early
