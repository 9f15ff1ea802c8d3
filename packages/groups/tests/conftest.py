import roster_auth.models  # noqa: F401  (tables must exist before the plugin creates them)
import roster_groups.models  # noqa: F401

pytest_plugins = ["roster_db.testing"]
