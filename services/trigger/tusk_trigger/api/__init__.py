"""HTTP routes of the trigger service."""
