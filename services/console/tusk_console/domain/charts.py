"""The pipeline page's charts, drawn on the server as SVG: no chart library, no script."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from tusk.client.models import JobInfo

WIDTH, HEIGHT, PAD = 640, 160, 36


@dataclass(frozen=True)
class JobPoint:
    job: str
    label: str
    duration_s: float
    datums_per_s: float
    state: str


def job_points(jobs: list[JobInfo]) -> list[JobPoint]:
    """Ended jobs, oldest first, with their duration and datums processed per second."""
    points = []
    for job in sorted(jobs, key=lambda j: j.created_at):
        if job.started_at is None or job.finished_at is None:
            continue
        seconds = max((job.finished_at - job.started_at).total_seconds(), 1e-3)
        done = job.counts.processed + job.counts.failed
        points.append(JobPoint(
            job=job.id, label=job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            duration_s=seconds, datums_per_s=done / seconds, state=job.state,
        ))
    return points


def bar_chart(points: list[JobPoint], field: str, title: str, unit: str) -> str:
    """One bar per job, tallest at the top; each bar names its job and value on hover."""
    values = [float(getattr(p, field)) for p in points]
    top = max(values, default=0.0) or 1.0
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    step = inner_w / max(len(points), 1)
    bars = []
    for i, (point, value) in enumerate(zip(points, values, strict=True)):
        h = inner_h * value / top
        width = min(step * 0.8, 48.0)  # one job must not fill the chart with one slab
        x = PAD + i * step + (step - width) / 2
        y = PAD + inner_h - h
        bars.append(
            f'<a href="/jobs/{point.job}"><rect class="bar state-{escape(point.state)}" '
            f'x="{x:.1f}" y="{y:.1f}" width="{max(width, 1):.1f}" height="{h:.1f}">'
            f"<title>{escape(point.label)}: {value:.3g} {escape(unit)}</title></rect></a>"
        )
    axis = (
        f'<line class="axis" x1="{PAD}" y1="{PAD + inner_h}" x2="{PAD + inner_w}" '
        f'y2="{PAD + inner_h}"/>'
        f'<text class="tick" x="{PAD - 4}" y="{PAD + 4}" text-anchor="end">{top:.3g}</text>'
        f'<text class="tick" x="{PAD - 4}" y="{PAD + inner_h}" text-anchor="end">0</text>'
        f'<text class="chart-title" x="{PAD}" y="{PAD - 12}">{escape(title)} ({escape(unit)})'
        "</text>"
    )
    summary = f"{title}: {len(points)} jobs, highest {top:.3g} {unit}"
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(summary)}">{axis}{"".join(bars)}</svg>'
    )
