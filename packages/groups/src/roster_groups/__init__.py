"""roster-groups: user groups and memberships."""
