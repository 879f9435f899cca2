import pytest

from mbrl_course.budget import budget, by_budget


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "default"),
        ({"CI": "true"}, "smoke"),
        ({"NBGRADER_EXECUTION": "autograde"}, "smoke"),
        ({"CI": "true", "MBRL_COURSE_BUDGET": "full"}, "full"),
        ({"MBRL_COURSE_BUDGET": "Smoke"}, "smoke"),
    ],
)
def test_budget_from_environment(monkeypatch, env, expected):
    for key in ("CI", "NBGRADER_EXECUTION", "MBRL_COURSE_BUDGET"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert budget() == expected


def test_bad_budget_names_the_variable(monkeypatch):
    monkeypatch.setenv("MBRL_COURSE_BUDGET", "huge")
    with pytest.raises(ValueError, match="MBRL_COURSE_BUDGET.*huge"):
        budget()


def test_by_budget_picks_the_tier():
    assert [by_budget(1, 2, 3, tier=t) for t in ("smoke", "default", "full")] == [1, 2, 3]
    with pytest.raises(ValueError, match="tier"):
        by_budget(1, 2, 3, tier="medium")
