"""schedules: why a workspace last started and stopped, its schedule, dormancy, and each user's time zone

Revision ID: 0011
Revises: 0010
"""

from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('workspaces') as batch:
        batch.add_column(sa.Column('last_start', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('last_stop', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('schedule', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('dormant_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('timezone', sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.drop_column('timezone')
    with op.batch_alter_table('workspaces') as batch:
        batch.drop_column('dormant_at')
        batch.drop_column('schedule')
        batch.drop_column('last_stop')
        batch.drop_column('last_start')
