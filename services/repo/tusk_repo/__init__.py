"""The repo service: repos, branches, commits and files (versioned data)."""
