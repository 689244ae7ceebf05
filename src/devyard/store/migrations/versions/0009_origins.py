"""origins: forwarded ports' visibility, and one-time codes that carry a login to a workspace's origin

Revision ID: 0009
Revises: 0008
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'workspace_ports',
        sa.Column('workspace_id', sa.Integer(), sa.ForeignKey('workspaces.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('port', sa.Integer(), primary_key=True),
        sa.Column('visibility', sa.String(length=16), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
    )
    op.create_table(
        'handoff_codes',
        sa.Column('code_hash', sa.String(length=64), primary_key=True),
        sa.Column('workspace_uid', sa.String(length=32), nullable=False),
        sa.Column('port', sa.Integer(), nullable=True),
        sa.Column('session_hash', sa.String(length=64), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
    )
    op.create_index('ix_handoff_codes_expires_at', 'handoff_codes', ['expires_at'])


def downgrade() -> None:
    op.drop_index('ix_handoff_codes_expires_at', table_name='handoff_codes')
    op.drop_table('handoff_codes')
    op.drop_table('workspace_ports')
