"""The stack-ceiling app: FastAPI + SQLAlchemy async Core (see app.py)."""
