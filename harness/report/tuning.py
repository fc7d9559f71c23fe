"""The tuning report: a self-contained HTML page with two inline SVG charts.

- The objective of each training job, in launch order, by status, with the best so far.
- The importance of each tuned hyperparameter for the objective, from Optuna's fANOVA
  evaluator over the training jobs that reported an objective.
"""

from __future__ import annotations

import html
import logging
import math
import os
from pathlib import Path

from harness.config import TuningConfig
from harness.tuning import TuningResult
from harness.tuning.records import COMPLETED, FAILED, STOPPED

logger = logging.getLogger(__name__)

STATUS_COLORS = {COMPLETED: "#1f77b4", STOPPED: "#ff7f0e", FAILED: "#d62728"}
WIDTH, HEIGHT, MARGIN = 640, 300, 48


def parameter_importances(tuning: TuningConfig, result: TuningResult) -> dict[str, float]:
    """Return {hyperparameter: importance} (summing to 1), or {} with fewer than two jobs
    that reported an objective or when the objective did not vary."""
    import optuna

    from harness.tuning.space import from_hyperparameter, search_space

    distributions = search_space(tuning.ranges)
    trials = []
    for record in result.trials:
        if record.objective is None or not math.isfinite(record.objective):
            continue
        params = {
            r.name: from_hyperparameter(r, record.hyperparameters.get(r.name, ""))
            for r in tuning.ranges
        }
        if any(value is None for value in params.values()):
            continue
        trials.append(
            optuna.trial.create_trial(
                params=params, distributions=distributions, value=record.objective
            )
        )
    if len(trials) < 2 or len({trial.value for trial in trials}) < 2:
        return {}
    study = optuna.create_study(
        direction="maximize" if tuning.objective_type == "Maximize" else "minimize"
    )
    study.add_trials(trials)
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError) as error:
        logger.warning("parameter importance not computed: %s", error)
        return {}


def write_tuning_report(path: Path, tuning: TuningConfig, result: TuningResult) -> Path:
    """Write the report to `path` (atomically) and return the path."""
    importances = parameter_importances(tuning, result)
    best = result.best_trial
    title = f"Tuning job {result.tuning_job_name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:60em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;"
        "text-align:right}th{background:#f3f3f3}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Strategy {html.escape(tuning.strategy)}; objective "
        f"{html.escape(tuning.objective_metric)} ({html.escape(tuning.objective_type)}); "
        f"{len(result.trials)} training jobs; completion: "
        f"{html.escape(result.completion_reason)}.</p>",
    ]
    if best is not None:
        parts.append(
            f"<p>Best training job: <b>{html.escape(best.name)}</b>, objective "
            f"{best.objective:.4f}.</p>"
        )
    parts.append("<h2>Objective by training job</h2>")
    parts.append(_objective_chart(tuning, result))
    parts.append("<h2>Hyperparameter importance</h2>")
    if importances:
        parts.append(_importance_chart(importances))
        parts.append(
            "<p>fANOVA importance (Optuna) over the training jobs that reported an objective, "
            "Stopped ones included with their last value.</p>"
        )
    else:
        parts.append("<p>Not enough training jobs with different objectives to compare.</p>")
    parts.append("<h2>Training jobs</h2>")
    parts.append(_trial_table(tuning, result))
    parts.append("</body></html>")
    partial = path.with_name(path.name + ".partial")
    partial.write_text("\n".join(parts), encoding="utf-8")
    os.replace(partial, path)
    return path


def _objective_chart(tuning: TuningConfig, result: TuningResult) -> str:
    points = [
        (index, trial)
        for index, trial in enumerate(result.trials, start=1)
        if trial.objective is not None and math.isfinite(trial.objective)
    ]
    if not points:
        return "<p>No training job reported the objective metric.</p>"
    values = [trial.objective for _, trial in points]
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 0.5, high + 0.5
    count = max(len(result.trials), 2)

    def x(index: int) -> float:
        return MARGIN + (index - 1) * (WIDTH - 2 * MARGIN) / (count - 1)

    def y(value: float) -> float:
        return HEIGHT - MARGIN - (value - low) * (HEIGHT - 2 * MARGIN) / (high - low)

    maximize = tuning.objective_type == "Maximize"
    best_so_far, path_points = None, []
    for index, trial in points:
        if best_so_far is None or (trial.objective > best_so_far) == maximize:
            best_so_far = trial.objective
        path_points.append(f"{x(index):.1f},{y(best_so_far):.1f}")
    svg = [
        f'<svg width="{WIDTH}" height="{HEIGHT}" '
        'role="img" aria-label="objective by training job">',
        _axes(low, high, count),
        f'<polyline fill="none" stroke="#2ca02c" stroke-width="1.5" '
        f'points="{" ".join(path_points)}"><title>best so far</title></polyline>',
    ]
    for index, trial in points:
        color = STATUS_COLORS.get(trial.status, "#7f7f7f")
        svg.append(
            f'<circle cx="{x(index):.1f}" cy="{y(trial.objective):.1f}" r="4" fill="{color}">'
            f"<title>{html.escape(trial.name)}: {trial.objective:.4f} ({trial.status})</title>"
            "</circle>"
        )
    legend_x = WIDTH - MARGIN - 150
    for row, (status, color) in enumerate(STATUS_COLORS.items()):
        legend_y = MARGIN / 2 + row * 14
        svg.append(f'<circle cx="{legend_x}" cy="{legend_y}" r="4" fill="{color}"/>')
        svg.append(f'<text x="{legend_x + 8}" y="{legend_y + 4}" font-size="11">{status}</text>')
    svg.append(
        f'<text x="{legend_x + 80}" y="{MARGIN / 2 + 4}" font-size="11" fill="#2ca02c">'
        "best so far</text>"
    )
    svg.append("</svg>")
    return "\n".join(svg)


def _axes(low: float, high: float, count: int) -> str:
    parts = [
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}" '
        f'y2="{HEIGHT - MARGIN}" stroke="#333"/>',
        f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{HEIGHT - MARGIN}" stroke="#333"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 10}" font-size="12" text-anchor="middle">'
        f"training job (1 to {count}, in launch order)</text>",
    ]
    for step in range(5):
        value = low + (high - low) * step / 4
        y = HEIGHT - MARGIN - step * (HEIGHT - 2 * MARGIN) / 4
        parts.append(
            f'<text x="{MARGIN - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
            f"{value:.3f}</text>"
        )
    return "\n".join(parts)


def _importance_chart(importances: dict[str, float]) -> str:
    ordered = sorted(importances.items(), key=lambda item: item[1], reverse=True)
    bar_height, label_width = 22, 160
    height = bar_height * len(ordered) + 20
    scale = (WIDTH - label_width - 60) / max(max(importances.values()), 1e-12)
    svg = [
        f'<svg width="{WIDTH}" height="{height}" role="img" aria-label="hyperparameter importance">'
    ]
    for row, (name, value) in enumerate(ordered):
        top = 10 + row * bar_height
        svg.append(
            f'<text x="{label_width - 6}" y="{top + 15}" font-size="12" text-anchor="end">'
            f"{html.escape(name)}</text>"
        )
        svg.append(
            f'<rect x="{label_width}" y="{top + 3}" width="{value * scale:.1f}" '
            f'height="{bar_height - 6}" fill="#1f77b4"><title>{value:.3f}</title></rect>'
        )
        svg.append(
            f'<text x="{label_width + value * scale + 6:.1f}" y="{top + 15}" font-size="11">'
            f"{value:.3f}</text>"
        )
    svg.append("</svg>")
    return "\n".join(svg)


def _trial_table(tuning: TuningConfig, result: TuningResult) -> str:
    names = [r.name for r in tuning.ranges]
    header = "".join(
        f"<th>{html.escape(h)}</th>"
        for h in ["training job", *names, "objective", "status", "duration (s)"]
    )
    rows = [f"<table><tr>{header}</tr>"]
    for trial in result.trials:
        duration = "" if trial.duration is None else f"{trial.duration:.1f}"
        objective = "" if trial.objective is None else f"{trial.objective:.4f}"
        cells = [trial.name, *(trial.hyperparameters.get(n, "") for n in names)]
        cells += [objective, trial.status, duration]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    rows.append("</table>")
    return "\n".join(rows)
