"""The leaderboard: Bradley-Terry ratings with bootstrap intervals from side-by-side votes, its table and chart."""

from __future__ import annotations

import random
from pathlib import Path

from bot.storage import Database, repo
from evals.leaderboard import chart, fit_ratings, table


def games(a: str, b: str, a_wins: int, b_wins: int, ties: int = 0) -> list[tuple[str, str, str]]:
    votes = [(a, b, "a")] * a_wins + [(a, b, "b")] * b_wins + [(a, b, "tie")] * ties
    random.Random(1).shuffle(votes)
    return votes


def tournament(scale: int) -> list[tuple[str, str, str]]:
    return (games("agent cloud", "zero-shot local", 8 * scale, 2 * scale)
            + games("zero-shot local", "agent cloud", 1 * scale, 9 * scale)  # A/B sides swapped: same mode wins
            + games("agent cloud", "prompt cloud", 7 * scale, 3 * scale)
            + games("prompt cloud", "zero-shot local", 6 * scale, 4 * scale))


def test_the_mode_that_wins_most_votes_ranks_first_with_an_interval_around_it() -> None:
    ratings = fit_ratings(tournament(10))
    assert [r.mode for r in ratings] == ["agent cloud", "prompt cloud", "zero-shot local"]
    best, _, worst = ratings
    assert best.ci_low <= best.score <= best.ci_high and worst.ci_low <= worst.score <= worst.ci_high
    assert best.ci_low > worst.ci_high  # 400 votes separate the best from the worst
    assert best.votes == 300 and worst.votes == 300  # 20, 10, 10 games per scale unit
    assert abs(sum(r.score for r in ratings) / 3 - 1000) < 1  # Elo scale centred on 1000
    # P(agent beats local) = 17/20 in the data; the fitted gap says about the same on the Elo scale
    expected_gap = 400 * __import__("math").log10(0.85 / 0.15)
    assert abs((best.score - worst.score) - expected_gap) < 60


def test_few_votes_give_wide_intervals() -> None:
    few = {r.mode: r.ci_high - r.ci_low for r in fit_ratings(tournament(1))}
    many = {r.mode: r.ci_high - r.ci_low for r in fit_ratings(tournament(20))}
    for mode, width in many.items():
        assert few[mode] > 3 * width, (mode, few[mode], width)


def test_ties_are_half_a_win_and_both_bad_says_nothing() -> None:
    even = fit_ratings(games("a x", "b y", 0, 0, ties=10) + [("a x", "b y", "both_bad")] * 30)
    assert [round(r.score) for r in even] == [1000, 1000] and [r.votes for r in even] == [10, 10]
    lopsided = games("a x", "b y", 6, 2, ties=4)  # 8 of 12 for a: like 2/3
    with_bad = fit_ratings(lopsided + [("a x", "b y", "both_bad")] * 50)
    assert fit_ratings(lopsided) == with_bad
    assert fit_ratings([("a x", "b y", "both_bad")]) == []


def test_an_unbeaten_mode_gets_a_finite_rating_and_a_seed_makes_it_repeatable() -> None:
    votes = games("a x", "b y", 5, 0)
    first, second = fit_ratings(votes, seed=3), fit_ratings(votes, seed=3)
    assert first == second
    assert first[0].mode == "a x" and 1000 < first[0].score < 2000 and first[0].ci_high < 3000
    mixed = tournament(1)
    assert fit_ratings(mixed, seed=1) != fit_ratings(mixed, seed=2)  # the bootstrap draws differ


def test_table_and_chart_show_every_mode_best_first(tmp_path: Path) -> None:
    ratings = fit_ratings(tournament(2))
    lines = table(ratings, "ru").splitlines()
    assert "рейтинг" in lines[0] and len(lines) == 4
    assert lines[1].split()[1:3] == ["agent", "cloud"] and lines[3].split()[-1] == "60"
    assert max(len(line) for line in lines) <= 50  # fits a phone
    assert "rating" in table(ratings, "en")
    png = chart(ratings, tmp_path / "board.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


async def test_leaderboard_from_stored_votes_of_the_current_season(database_url: str) -> None:
    db = Database(database_url)
    await db.create_all()
    try:
        def seed(s, winner: str, voters: range) -> None:  # type: ignore[no-untyped-def]
            for voter in voters:
                cid = repo.add_comparison(s, chat_id=1, question=f"q{voter}", history=[], system_prompt=None,
                                          mode_a=("prompt", "cloud"), answer_a="x", mode_b=("zero-shot", "local"),
                                          answer_b="y")
                repo.record_vote(s, cid, voter, winner)

        await db.run(lambda s: seed(s, "b", range(20)))
        await db.run(repo.new_season)
        await db.run(lambda s: seed(s, "a", range(20, 30)))
        season = await db.run(repo.current_season)
        now = fit_ratings(await db.run(lambda s: repo.vote_outcomes(s, season=season)))
        assert [(r.mode, r.votes) for r in now] == [("prompt cloud", 10), ("zero-shot local", 10)]
        ever = fit_ratings(await db.run(repo.vote_outcomes))
        assert ever[0].mode == "zero-shot local" and ever[0].votes == 30
    finally:
        await db.dispose()
