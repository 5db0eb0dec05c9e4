"""The scheduler's REST routes: read-only job detail (health and metrics live in app.py)."""
