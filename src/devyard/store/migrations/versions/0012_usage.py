"""usage: what each workspace used, per 5-minute (recent) or hourly span

Revision ID: 0012
Revises: 0011
"""

from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'usage',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('uid', sa.String(16), nullable=False),
        sa.Column('owner', sa.String(64), nullable=False),
        sa.Column('name', sa.String(64), nullable=False),
        sa.Column('size', sa.String(32), nullable=True),
        sa.Column('start', sa.DateTime(), nullable=False),
        sa.Column('span_s', sa.Integer(), nullable=False),
        sa.Column('running_s', sa.Float(), nullable=False),
        sa.Column('cpu_s', sa.Float(), nullable=False),
        sa.Column('memory_byte_s', sa.Float(), nullable=False),
        sa.Column('memory_peak', sa.BigInteger(), nullable=False),
        sa.Column('disk_bytes', sa.BigInteger(), nullable=False),
        sa.Column('starts', sa.Integer(), nullable=False),
        sa.UniqueConstraint('uid', 'start', 'span_s', name='uq_usage_span'),
    )
    op.create_index('ix_usage_owner', 'usage', ['owner'])
    op.create_index('ix_usage_start', 'usage', ['start'])


def downgrade() -> None:
    op.drop_index('ix_usage_start', 'usage')
    op.drop_index('ix_usage_owner', 'usage')
    op.drop_table('usage')
