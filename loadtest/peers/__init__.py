"""The peers tusk is measured against, each installed from PyPI into its own virtualenv."""
