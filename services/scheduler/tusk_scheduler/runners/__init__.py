"""Where workers run: one :class:`~tusk_scheduler.runners.base.Runner` per kind."""
