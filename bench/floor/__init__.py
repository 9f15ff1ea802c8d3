"""The floor: the least a Python service on Postgres can do to answer the same requests."""
