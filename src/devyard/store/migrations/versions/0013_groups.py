"""groups: local and identity-provider groups, their members, workspaces shared with a group

Revision ID: 0013
Revises: 0012
"""

from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'groups',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('name', sa.String(128), nullable=False, unique=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
    )
    op.create_table(
        'group_members',
        sa.Column('group_id', sa.Integer(), sa.ForeignKey('groups.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('user_id', sa.Integer(), sa.ForeignKey('users.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('source', sa.String(8), nullable=False),
        sa.Column('added_at', sa.DateTime(), nullable=False),
    )
    op.create_index('ix_group_members_user_id', 'group_members', ['user_id'])
    op.create_table(
        'group_shares',
        sa.Column('workspace_id', sa.Integer(), sa.ForeignKey('workspaces.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('group_id', sa.Integer(), sa.ForeignKey('groups.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
    )
    op.create_index('ix_group_shares_group_id', 'group_shares', ['group_id'])
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('groups', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.drop_column('groups')
    op.drop_index('ix_group_shares_group_id', 'group_shares')
    op.drop_table('group_shares')
    op.drop_index('ix_group_members_user_id', 'group_members')
    op.drop_table('group_members')
    op.drop_table('groups')
