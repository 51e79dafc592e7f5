"""Human-readable views of a load run: the final report table and the live progress line.

Kept apart from :mod:`gapless.loadgen.report` so the report stays plain data that library callers can
use without rich. Failures are never abbreviated: every kind with its count is listed, in red.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from gapless.loadgen.report import LatencySummary, LoadReport, LoadSnapshot

__all__ = ["render_progress", "render_report"]


def render_report(report: LoadReport) -> Table:
    """A two-column table of the whole report: rates, counts, failures by kind, latency, versions."""
    table = Table(
        title=f"gapless load: {report.method} {report.url}", show_header=False, title_justify="left"
    )
    table.add_column("metric", style="bold")
    table.add_column("value")

    window = f"{report.send_window:.2f} s" + (" (stopped early)" if report.stopped_early else "")
    table.add_row("rate", f"{report.achieved_rps:.1f}/s achieved of {report.target_rps:g}/s target")
    table.add_row("send window", f"{window}, {report.elapsed:.2f} s until the last response")
    table.add_row("sent", str(report.sent))
    table.add_row("ok", Text(str(report.ok), style="green"))
    table.add_row("failed", Text(str(report.failed), style="red bold" if report.failed else "green"))

    if report.failures:
        table.add_section()
        for kind, count in report.failures.items():
            table.add_row(Text(f"  {kind}", style="red"), Text(str(count), style="red"))

    if report.status_codes:
        table.add_section()
        codes = ", ".join(f"{code}: {n}" for code, n in report.status_codes.items())
        table.add_row("status codes", codes)

    table.add_section()
    table.add_row("latency", _latency(report.latency))
    table.add_row("from due time", _latency(report.scheduled_latency))

    if report.versions:
        table.add_section()
        for version, count in report.versions.items():
            summary = report.version_latency.get(version)
            detail = f"  (p50 {_ms(summary.p50)}, p99 {_ms(summary.p99)})" if summary else ""
            table.add_row(Text(f"version {version}"), f"{count}{detail}")  # the header is the server's
    return table


def render_progress(snapshot: LoadSnapshot) -> Text:
    """One line: elapsed, sent, ok, failed (red when > 0), in flight and the current rate."""
    line = Text()
    line.append(f"{snapshot.elapsed:6.1f}s  sent {snapshot.sent}  ")
    line.append(f"ok {snapshot.ok}", style="green")
    line.append("  ")
    line.append(f"failed {snapshot.failed}", style="red bold" if snapshot.failed else "green")
    line.append(f"  in flight {snapshot.in_flight}  {snapshot.current_rps:.0f}/s")
    if snapshot.versions:
        line.append("  " + " ".join(f"{v}={n}" for v, n in sorted(snapshot.versions.items())), style="cyan")
    return line


def _latency(summary: LatencySummary) -> str:
    if summary.count == 0:
        return "no responses"
    return (
        f"p50 {_ms(summary.p50)}  p95 {_ms(summary.p95)}  p99 {_ms(summary.p99)}  "
        f"max {_ms(summary.max)}  ({summary.count} samples)"
    )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"
