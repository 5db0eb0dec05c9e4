"""The composition root: the `tusk` command and the embedded stack."""
