"""The scheduler's background loops, started and stopped by :mod:`tusk_scheduler.context`:
the leadership lease, and the dispatcher that runs while this process leads."""
