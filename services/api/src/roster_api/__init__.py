"""roster-api: the roster service and its command line."""
