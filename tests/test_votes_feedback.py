"""Votes on side-by-side answers and feedback on stored answers, on SQLite and PostgreSQL (the storage layer)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot.storage import Database, repo
from bot.storage.models import AnswerPart, Feedback, Message, Vote


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.create_all()
    yield database
    await database.dispose()


async def store_turn(db: Database, chat_id: int, question: str, answer: str, mode: tuple[str, str]) -> int:
    """Store a question and its answer as the chat service does; the answer's message id."""

    def write(s: Session) -> int:
        repo.add_turn(s, [dict(chat_id=chat_id, role=role, content=content, complete=True, level=mode[0],
                               model=mode[1]) for role, content in (("user", question), ("assistant", answer))])
        return int(s.scalar(select(func.max(Message.id)).where(Message.chat_id == chat_id)))

    return await db.run(write)


async def compare(db: Database, chat_id: int = 5) -> int:
    return await db.run(lambda s: repo.add_comparison(
        s, chat_id=chat_id, question="What is 2+2?", history=[{"role": "user", "content": "hi"},
                                                              {"role": "assistant", "content": "hello"}],
        system_prompt="Be brief.", mode_a=("prompt", "cloud"), answer_a="4", mode_b=("zero-shot", "local"),
        answer_b="5"))


async def test_a_second_vote_changes_the_first_and_each_voter_counts_once(db: Database) -> None:
    cid = await compare(db)
    await db.run(lambda s: repo.record_vote(s, cid, 100, "b"))
    await db.run(lambda s: repo.record_vote(s, cid, 100, "a"))  # changed their mind
    await db.run(lambda s: repo.record_vote(s, cid, 200, "tie"))
    assert await db.run(lambda s: repo.vote_tally(s, cid)) == {"a": 1, "b": 0, "tie": 1, "both_bad": 0}
    outcomes = await db.run(lambda s: repo.vote_outcomes(s))
    assert sorted(outcomes) == [("prompt cloud", "zero-shot local", "a"), ("prompt cloud", "zero-shot local", "tie")]
    stored = await db.run(lambda s: repo.get_comparison(s, cid))
    assert stored is not None and stored.question == "What is 2+2?" and stored.system_prompt == "Be brief."
    assert '"hello"' in stored.history


async def test_bad_votes_and_feedback_are_refused_with_a_reason_and_store_nothing(db: Database) -> None:
    cid = await compare(db)
    with pytest.raises(repo.InvalidVerdict, match="unknown vote"):
        await db.run(lambda s: repo.record_vote(s, cid, 1, "maybe"))
    with pytest.raises(repo.InvalidVerdict, match="no comparison"):
        await db.run(lambda s: repo.record_vote(s, cid + 99, 1, "a"))
    answer = await store_turn(db, 5, "q", "a", ("prompt", "cloud"))
    with pytest.raises(repo.InvalidVerdict, match="unknown reason"):
        await db.run(lambda s: repo.record_feedback(s, answer, 1, rating="down", source="button", reason="ugly"))
    with pytest.raises(repo.InvalidVerdict, match="no stored answer"):
        await db.run(lambda s: repo.record_feedback(s, answer - 1, 1, rating="up", source="button"))  # a question
    with pytest.raises(repo.InvalidVerdict, match="corrected text"):
        await db.run(lambda s: repo.record_feedback(s, answer, 1, rating="down", source="correction",
                                                    correction="  "))
    assert await db.run(lambda s: repo.vote_tally(s, cid)) == {"a": 0, "b": 0, "tie": 0, "both_bad": 0}
    assert await db.run(lambda s: repo.feedback_counts(s, datetime.now(UTC) - timedelta(days=1))) == {}


async def test_new_season_keeps_votes_and_later_votes_belong_to_it(db: Database) -> None:
    cid = await compare(db)
    await db.run(lambda s: repo.record_vote(s, cid, 1, "a"))
    assert await db.run(repo.new_season) == 2
    await db.run(lambda s: repo.record_vote(s, cid, 2, "b"))
    assert [v for *_, v in await db.run(lambda s: repo.vote_outcomes(s, season=2))] == ["b"]
    assert sorted(v for *_, v in await db.run(lambda s: repo.vote_outcomes(s))) == ["a", "b"]  # nothing deleted


async def test_feedback_counts_per_mode_for_a_period(db: Database) -> None:
    cloud = await store_turn(db, 5, "q1", "a1", ("prompt", "cloud"))
    local = await store_turn(db, 5, "q2", "a2", ("zero-shot", "local"))
    await db.run(lambda s: repo.record_feedback(s, cloud, 1, rating="up", source="button"))
    await db.run(lambda s: repo.record_feedback(s, cloud, 2, rating="down", source="reaction", reason="too_long"))
    await db.run(lambda s: repo.record_feedback(s, local, 1, rating="down", source="button", reason="wrong_facts"))
    await db.run(lambda s: repo.record_feedback(s, local, 1, rating="up", source="button"))  # changed: now 👍
    await db.run(lambda s: repo.record_feedback(s, local, 1, rating="down", source="correction",
                                                correction="a2, fixed", system_prompt="Be brief."))
    await db.run(lambda s: repo.record_feedback(s, local, 3, rating="down", source="button"))
    cid = await compare(db)
    await db.run(lambda s: repo.record_vote(s, cid, 1, "a"))
    # an old 👍, outside the last 7 days
    await db.run(lambda s: s.execute(update(Feedback).where(Feedback.user_id == 1, Feedback.message_id == cloud)
                                     .values(created_at=datetime.now(UTC) - timedelta(days=10))))
    week = await db.run(lambda s: repo.feedback_counts(s, datetime.now(UTC) - timedelta(days=7)))
    assert week["prompt cloud"] == repo.ModeCounts(up=0, down={"too_long": 1}, corrections=0, votes=1)
    assert week["zero-shot local"] == repo.ModeCounts(up=1, down={"unspecified": 1}, corrections=1, votes=1)
    month = await db.run(lambda s: repo.feedback_counts(s, datetime.now(UTC) - timedelta(days=30)))
    assert month["prompt cloud"].up == 1
    rows = await db.run(lambda s: s.query(Feedback).filter(Feedback.kind == "correction").all())
    assert [(r.correction, r.level, r.model, r.system_prompt) for r in rows] == [
        ("a2, fixed", "zero-shot", "local", "Be brief.")]


async def test_votes_and_feedback_tables_appear_in_an_existing_database(database_url: str) -> None:
    from sqlalchemy import inspect

    database = Database(database_url)
    try:
        await database.create_all()
        await database.run(lambda s: s.execute(Vote.__table__.delete()))
        # an older database: made before these tables existed
        await database.run(lambda s: [t.drop(s.connection()) for t in (Vote.__table__, Feedback.__table__)])
        answer = await store_turn(database, 5, "q", "kept", ("prompt", "cloud"))
        await database.create_all()  # what start-up does
        names = await database.run(lambda s: inspect(s.connection()).get_table_names())
        assert {"votes", "feedback", "comparisons", "messages"} <= set(names)
        await database.run(lambda s: repo.record_feedback(s, answer, 1, rating="up", source="button"))
        assert [m.content for m in await database.run(lambda s: repo.history(s, 5))] == ["q", "kept"]
    finally:
        await database.dispose()


async def test_export_readers_walk_every_rated_answer_with_its_history_in_pages(db: Database) -> None:
    first = await store_turn(db, 7, "q1", "a1", ("prompt", "cloud"))
    await store_turn(db, 8, "other chat", "unrated", ("prompt", "cloud"))
    second = await store_turn(db, 7, "q2", "a2", ("prompt", "cloud"))
    await db.run(lambda s: repo.record_feedback(s, first, 1, rating="up", source="button"))
    await db.run(lambda s: repo.record_feedback(s, second, 1, rating="down", source="button"))
    seen, after = [], (-(2**62), 0)
    while page := await db.run(lambda s, a=after: repo.feedback_chat_page(s, a, 3)):
        seen += page
        after = (page[-1].chat_id, page[-1].id)
    assert [(m.role, m.content, [f.rating for f in m.feedback]) for m in seen] == [
        ("user", "q1", []), ("assistant", "a1", ["up"]), ("user", "q2", []), ("assistant", "a2", ["down"])]
    cid = await compare(db)
    await db.run(lambda s: repo.record_vote(s, cid, 1, "a"))
    page = await db.run(lambda s: repo.voted_comparisons_page(s, 0, 10))
    assert [(c.mode_a, c.mode_b, c.votes, c.history[-1]["content"]) for c in page] == [
        ("prompt cloud", "zero-shot local", [(1, "a")], "hello")]


async def test_answers_found_by_their_telegram_messages_corrected_and_forgotten_with_the_chat(db: Database) -> None:
    """What reactions and /fix rely on: a Telegram message finds its stored answer; a correction replaces the
    answer in memory and keeps the model's original (through a second correction too); /reset forgets both."""
    first = await store_turn(db, 5, "q", "model answer", ("prompt", "cloud"))
    await db.run(lambda s: s.execute(update(Message).where(Message.chat_id == 5).values(update_id=41)))
    await db.run(lambda s: repo.link_answer_parts(s, 5, 41, [900, 0, 901]))
    await db.run(lambda s: repo.link_answer_parts(s, 5, 41, [901]))  # linked again by a re-run: no duplicate
    found = await db.run(lambda s: repo.answer_of_part(s, 5, 901))
    assert found is not None and found.id == first
    assert await db.run(lambda s: repo.answer_of_part(s, 6, 901)) is None  # another chat's message 901

    for user, text in ((1, "better"), (2, "best")):
        original = await db.run(lambda s, t=text: repo.correct_answer(s, first, t))
        await db.run(lambda s, u=user, t=text, o=original: repo.record_feedback(
            s, first, u, rating="down", source="correction", correction=t, original=o))
        assert original == "model answer"
    assert [m.content for m in await db.run(lambda s: repo.history(s, 5))] == ["q", "best"]

    await db.run(lambda s: repo.record_feedback(s, first, 3, rating="up", source="reaction"))
    await db.run(lambda s: repo.record_feedback(s, first, 4, rating="up", source="button"))
    assert await db.run(lambda s: repo.remove_feedback(s, first, 3, source="reaction"))
    assert not await db.run(lambda s: repo.remove_feedback(s, first, 4, source="reaction"))  # a button stays
    assert await db.run(lambda s: repo.clear_history(s, 5)) == 2
    assert await db.run(lambda s: repo.answer_of_part(s, 5, 900)) is None
    assert await db.run(lambda s: s.query(AnswerPart).count()) == 0


async def test_a_comparison_is_found_by_its_update_until_its_answer_is_forgotten(db: Database) -> None:
    """What a re-run of a compare-mode question and a vote rely on, on SQLite and PostgreSQL."""

    def store(s: Session) -> int:
        _, memory = repo.add_messages(s, [dict(chat_id=5, role="user", content="q", update_id=77),
                                          dict(chat_id=5, role="assistant", content="4", update_id=77)])
        cid = repo.add_comparison(s, chat_id=5, question="q", history=[], system_prompt=None,
                                  mode_a=("prompt", "cloud"), answer_a="4", mode_b=("rag", "cloud"), answer_b="5")
        repo.link_comparison(s, cid, memory_id=memory)
        return cid

    cid = await db.run(store)
    found = await db.run(lambda s: repo.comparison_of_update(s, 5, 77))
    assert found is not None and found.id == cid
    assert await db.run(lambda s: repo.comparison_of_update(s, 6, 77)) is None  # another chat's update
    await db.run(lambda s: repo.clear_history(s, 5))
    await db.run(lambda s: repo.add_messages(s, [dict(chat_id=6, role="user", content="hi", update_id=78),
                                                 dict(chat_id=6, role="assistant", content="hello", update_id=78)]))
    comparison = await db.run(lambda s: repo.get_comparison(s, cid))
    assert comparison is not None
    assert await db.run(lambda s: repo.comparison_memory(s, comparison)) is None  # forgotten, whatever took its id
    assert await db.run(lambda s: repo.comparison_of_update(s, 5, 77)) is None
