"""Pure decision logic: given a spec, what is observed and the time, what should happen next.

Nothing here does I/O; every function is deterministic in its arguments, so it is tested with tables.
"""
