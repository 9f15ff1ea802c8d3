"""roster-auth: users and authentication."""
