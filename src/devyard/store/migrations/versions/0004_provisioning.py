"""workspaces remember when provisioning finished (retry-provision)

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('workspaces', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provisioned_at', sa.DateTime(), nullable=True))
    # Until now provisioning finished inside the create request: every workspace that exists got it.
    op.execute("UPDATE workspaces SET provisioned_at = created_at WHERE status != 'provisioning' AND status != 'creating'")


def downgrade() -> None:
    with op.batch_alter_table('workspaces', schema=None) as batch_op:
        batch_op.drop_column('provisioned_at')
