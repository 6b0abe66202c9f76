"""One administrative statement (CREATE/DROP DATABASE) on a PostgreSQL server, for tests and benches."""

from __future__ import annotations


async def pg_execute(url: str, sql: str) -> None:
    """Run `sql` on the database `url` names (a SQLAlchemy URL), outside any transaction."""
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = await asyncpg.connect(host=u.host, port=u.port, user=u.username, password=u.password, database=u.database)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
