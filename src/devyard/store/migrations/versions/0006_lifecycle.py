"""lifecycle: per-user quotas, per-workspace idle timeout

Revision ID: 0006
Revises: 0005
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('max_workspaces', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('max_running', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('max_disk_mb', sa.Integer(), nullable=True))
    with op.batch_alter_table('workspaces', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idle_timeout_s', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('workspaces', schema=None) as batch_op:
        batch_op.drop_column('idle_timeout_s')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('max_disk_mb')
        batch_op.drop_column('max_running')
        batch_op.drop_column('max_workspaces')
