"""repo tree nodes: references packed for garbage collection; stored uncompressed on PostgreSQL

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 09:50:00

Existing nodes are filled in here, a batch at a time; a node left NULL (written by an older
process during an upgrade) is decoded by the collector instead, so NULL is never wrong.

On PostgreSQL the node columns are stored out of line without compression (``STORAGE
EXTERNAL``): pglz tried to compress every large node written and gained nothing on the hex
hashes that make up most of it (100 nodes of 10,000 entries: 5.9 s to insert, 0.5 s without).
Nodes already stored keep their format; both read the same.
"""

import binascii
import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 500
# As tusk_repo.trees.node_refs, copied so that this migration does what it did when written.
_FILE_KEYS = re.compile(rb'","f","([0-9a-f]{16})')
_SUBDIRS = re.compile(rb'","d","([0-9a-f]{64})')


def upgrade() -> None:
    with op.batch_alter_table("repo_trees", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subdirs", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("file_keys", sa.LargeBinary(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        for column in ("entries", "subdirs", "file_keys"):
            op.execute(f"ALTER TABLE repo_trees ALTER COLUMN {column} SET STORAGE EXTERNAL")
    trees = sa.table(
        "repo_trees",
        sa.column("hash", sa.String(64)),
        sa.column("entries", sa.LargeBinary()),
        sa.column("subdirs", sa.LargeBinary()),
        sa.column("file_keys", sa.LargeBinary()),
    )
    connection = op.get_bind()
    after = ""
    while True:
        rows = connection.execute(
            sa.select(trees.c.hash, trees.c.entries)
            .where(trees.c.hash > after)
            .order_by(trees.c.hash)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        connection.execute(
            trees.update()
            .where(trees.c.hash == sa.bindparam("h"))
            .values(subdirs=sa.bindparam("s"), file_keys=sa.bindparam("k")),
            [
                {
                    "h": digest,
                    "s": binascii.unhexlify(b"".join(_SUBDIRS.findall(blob))),
                    "k": binascii.unhexlify(b"".join(_FILE_KEYS.findall(blob))),
                }
                for digest, blob in rows
            ],
        )
        after = rows[-1][0]


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE repo_trees ALTER COLUMN entries SET STORAGE EXTENDED")
    with op.batch_alter_table("repo_trees", schema=None) as batch_op:
        batch_op.drop_column("file_keys")
        batch_op.drop_column("subdirs")
