pytest_plugins = ["roster_db.testing"]
