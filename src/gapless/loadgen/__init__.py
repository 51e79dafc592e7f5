"""An open-loop HTTP load generator that counts every outcome and hides no failure.

The rolling-update demo and end-to-end tests drive it as a library (:func:`run_load`); ``gapless load``
is a thin face over the same call. It only targets loopback addresses, so it cannot be turned on
someone else's server.

Modules: :mod:`.settings` (bounds), :mod:`.target` (URL and loopback check), :mod:`.http1` (the
lean HTTP/1.1 client), :mod:`.outcome` (failure kinds), :mod:`.runner` (the schedule),
:mod:`.report` (results as data) and :mod:`.render` (results for people).
"""

from gapless.loadgen.render import render_progress, render_report
from gapless.loadgen.report import LatencySummary, LoadReport, LoadSnapshot
from gapless.loadgen.runner import DEFAULT_MAX_IN_FLIGHT, run_load
from gapless.loadgen.settings import MAX_DURATION, MAX_RPS, LoadInputError
from gapless.loadgen.target import Target, resolve_target

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "MAX_DURATION",
    "MAX_RPS",
    "LatencySummary",
    "LoadInputError",
    "LoadReport",
    "LoadSnapshot",
    "Target",
    "render_progress",
    "render_report",
    "resolve_target",
    "run_load",
]
