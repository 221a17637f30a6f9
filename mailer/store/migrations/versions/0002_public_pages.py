"""public pages: notice queue, suppression mailbox key, no id reuse on SQLite

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 09:10:00.000000

- `notice`: confirmation emails queued by the web form (sent by `mailer serve` / `mailer worker`).
- `suppression.mailbox`: addresses.mailbox_key(email), indexed, so dot and +tag variants of a
  suppressed mailbox match in one query. Filled for the rows already there.
- SQLite only: `contact` and `mailing_list` are rebuilt with AUTOINCREMENT, so the id of an
  erased contact or a deleted list is never given to a new row (links carry those ids).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mailer.contacts.addresses import mailbox_key
from mailer.store.models import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REBUILT = ("contact", "mailing_list")


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    if sqlite:
        _sqlite_autoincrement(bind)
    op.create_table(
        "notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
            name=op.f("fk_notice_contact_id_contact"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_notice_due", "notice", ["state", "due_at"], unique=False)
    with op.batch_alter_table("suppression") as batch_op:
        batch_op.add_column(sa.Column("mailbox", sa.String(length=320), nullable=True))
    table = sa.table(
        "suppression",
        sa.column("id", sa.Integer()),
        sa.column("email", sa.String()),
        sa.column("mailbox", sa.String()),
    )
    rows = bind.execute(sa.select(table.c.id, table.c.email)).all()
    for row_id, email in rows:
        bind.execute(table.update().where(table.c.id == row_id).values(mailbox=mailbox_key(email)))
    with op.batch_alter_table("suppression") as batch_op:
        batch_op.alter_column("mailbox", existing_type=sa.String(length=320), nullable=False)
        batch_op.create_index(batch_op.f("ix_suppression_mailbox"), ["mailbox"], unique=False)


def _sqlite_autoincrement(bind: sa.Connection) -> None:
    """Rebuild the tables whose ids appear in links, with AUTOINCREMENT.

    A rebuild drops the old table, and with foreign keys on SQLite deletes (cascades) every row
    that points at it first. The pragma cannot change inside a transaction, so the transaction
    alembic opened is committed (with what earlier migrations did and their stamps), the
    rebuild runs with foreign keys off and is checked, then a new transaction carries on. The
    rebuild is idempotent: a crash after it only repeats it.
    """
    raw = bind.connection.dbapi_connection
    assert raw is not None

    def ddl(name: str) -> str:
        return str(
            bind.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
            ).scalar()
            or ""
        )

    todo = [name for name in _REBUILT if "AUTOINCREMENT" not in ddl(name).upper()]
    if not todo:
        return
    raw.execute("COMMIT")
    raw.execute("PRAGMA foreign_keys=OFF")
    raw.execute("BEGIN IMMEDIATE")
    try:
        for name in todo:
            with op.batch_alter_table(
                name, recreate="always", table_kwargs={"sqlite_autoincrement": True}
            ):
                pass
        broken = bind.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise RuntimeError(f"rebuilding {', '.join(todo)} broke foreign keys: {broken[:5]}")
        raw.execute("COMMIT")
    except BaseException:
        raw.execute("ROLLBACK")
        raise
    finally:
        raw.execute("PRAGMA foreign_keys=ON")
        raw.execute("BEGIN IMMEDIATE")


def downgrade() -> None:
    with op.batch_alter_table("suppression") as batch_op:
        batch_op.drop_index(batch_op.f("ix_suppression_mailbox"))
        batch_op.drop_column("mailbox")
    op.drop_index("ix_notice_due", table_name="notice")
    op.drop_table("notice")
