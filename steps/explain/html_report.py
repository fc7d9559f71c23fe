"""The explain step's report.html: one self-contained page of inline SVG charts.

The page loads nothing: no script, style sheet, font or image from another file or host,
so it opens offline from a downloaded output folder. matplotlib is not a dependency of
this project, so the charts are SVG elements written here.
"""

from __future__ import annotations

import html

import numpy as np

# Features shown in the bar chart, the summary plot and the per-query table.
MAX_BAR_FEATURES = 30
MAX_SUMMARY_FEATURES = 20
MAX_QUERY_FEATURES = 8
# Dots per feature in the summary plot. More rows are sampled down with the step's seed.
MAX_SUMMARY_DOTS = 1000

LABEL_WIDTH = 180
PLOT_WIDTH = 500
ROW_HEIGHT = 22
# Low and high ends of the feature value color scale, as in shap's summary plot.
LOW_COLOR = np.array([0, 139, 251])
HIGH_COLOR = np.array([255, 0, 82])
RAISE_COLOR = "255, 0, 82"
LOWER_COLOR = "0, 139, 251"

STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f2f2f2; } td.text, th.text { text-align: left; }
svg text { font-size: 11px; fill: #222; }
.pdp { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
.note { color: #555; font-size: 0.9em; }
"""


def number(value: float) -> str:
    return f"{value:.4g}"


def escape(text) -> str:
    return html.escape(str(text), quote=True)


def render(analysis, feature_names, explained, rows, queries, explanation, normalization, seed):
    """Return report.html for the explain step's results.

    `feature_names` and `explained` name and index the explained features, `rows` are the
    explained rows in model input units and `normalization` is schema.json's mean and std
    per feature, or None. The report shows feature values before standardization when it
    has them.
    """
    shap_section = analysis["explanations"]["kernel_shap"]
    label, result = next(iter(shap_section.items()))
    global_values = np.array([result["global_shap_values"][name] for name in feature_names])
    order = sorted(range(len(feature_names)), key=lambda k: (-abs(global_values[k]), k))

    def raw_values(column: np.ndarray, feature: int) -> np.ndarray:
        if normalization is None:
            return column
        return column * normalization["std"][feature] + normalization["mean"][feature]

    units = "before standardization" if normalization else "model input units"
    others = ""
    if explanation.other_features is not None:
        others = " and the joint SHAP value of the features left out of features_to_explain"
    explainer = analysis["explainer"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>SHAP explanation of the ranking model</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>SHAP explanation of the ranking model</h1>",
        f"<p>SHAP values of the model's {escape(label)} of each document, computed with "
        f"{escape(explainer['name'])} (shap {escape(explainer['shap_version'])}) on "
        f"{explainer['rows']} documents of {explainer['queries']} test queries. A document's "
        f"score equals the expected value {number(result['expected_value'])} plus the sum of "
        f"its SHAP values{others}.</p>",
        settings_table(explainer, result["expected_value"]),
        "<h2>Global feature importance</h2>",
        f'<p class="note">Global SHAP value per feature, aggregated with '
        f"{escape(explainer['agg_method'])}.</p>",
        bar_chart([feature_names[k] for k in order], global_values[order]),
        "<h2>Summary plot</h2>",
        '<p class="note">One dot per explained document. Its position is the SHAP value of '
        "the feature, its color the document's value of the feature, from blue (low) to "
        "red (high) within that feature.</p>",
        summary_plot(
            [feature_names[k] for k in order[:MAX_SUMMARY_FEATURES]],
            explanation.values[:, order[:MAX_SUMMARY_FEATURES]],
            rows[:, [explained[k] for k in order[:MAX_SUMMARY_FEATURES]]],
            seed,
        ),
        "<h2>Partial dependence</h2>",
    ]

    pdp = analysis["explanations"].get("pdp") or []
    if pdp:
        parts.append(
            f'<p class="note">Mean {escape(label)} over the explained documents with one feature '
            f"set to each bucket centre, with feature values {units}. Grey bars show the share "
            "of documents in each bucket.</p>"
        )
        position = {name: explained[k] for k, name in enumerate(feature_names)}
        for entry in pdp:
            feature = position[entry["feature_name"]]
            centres = raw_values(np.array(entry["feature_values"]), feature)
            parts.append(pdp_plot(entry, centres, units))
    else:
        parts.append('<p class="note">Partial dependence was turned off.</p>')

    parts.append("<h2>Per-query view</h2>")
    # The explained rows run query by query, so the first query's documents come first.
    first = queries[0]
    table_features = order[:MAX_QUERY_FEATURES]
    table_values = np.column_stack(
        [raw_values(first.features[:, explained[k]], explained[k]) for k in table_features]
    )
    parts.append(
        query_table(first, explanation, feature_names, table_features, table_values, units)
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def settings_table(explainer: dict, expected_value: float) -> str:
    baseline = ", ".join(f"{key} {value}" for key, value in explainer["baseline"].items())
    rows = [
        ("explainer", explainer["name"]),
        ("why this explainer", explainer["reason"]),
        ("baseline", baseline),
        ("samples per row", f"{explainer['num_samples']} (exact: {explainer['exact']})"),
        ("expected value", number(expected_value)),
        ("aggregation", explainer["agg_method"]),
        ("seed", explainer["seed"]),
        ("documents / queries", f"{explainer['rows']} / {explainer['queries']}"),
        ("rows scored for SHAP", explainer["rows_scored_for_shap"]),
    ]
    seconds = explainer.get("seconds")
    if seconds:
        rows.append(("seconds", ", ".join(f"{key} {value}" for key, value in seconds.items())))
    cells = "".join(
        f'<tr><th class="text">{escape(key)}</th><td class="text">{escape(value)}</td></tr>'
        for key, value in rows
    )
    return f"<table>{cells}</table>"


def linear_scale(low: float, high: float, start: float, end: float):
    """Return a function that maps [low, high] onto pixels [start, end], a point to the middle."""
    if high == low:
        return lambda value: (start + end) / 2
    return lambda value: start + (value - low) / (high - low) * (end - start)


def bar_chart(names: list[str], values: np.ndarray) -> str:
    """Return a horizontal bar chart of one value per name, drawn in the given order."""
    bar_count = min(len(names), MAX_BAR_FEATURES)
    low, high = min(0.0, float(values[:bar_count].min())), max(0.0, float(values[:bar_count].max()))
    x = linear_scale(low, high, LABEL_WIDTH, LABEL_WIDTH + PLOT_WIDTH)
    height = bar_count * ROW_HEIGHT + 30
    width = LABEL_WIDTH + PLOT_WIDTH + 90
    items = [f'<svg width="{width}" height="{height}" role="img" aria-label="global importance">']
    for i in range(bar_count):
        y = i * ROW_HEIGHT + 5
        left, right = sorted((x(0.0), x(float(values[i]))))
        color = RAISE_COLOR if values[i] >= 0 else LOWER_COLOR
        items.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 14}" text-anchor="end">{escape(names[i])}</text>'
            f'<rect x="{left:.1f}" y="{y + 3}" width="{max(right - left, 0.5):.1f}" '
            f'height="{ROW_HEIGHT - 6}" fill="rgb({color})"/>'
            f'<text x="{right + 4:.1f}" y="{y + 14}">{number(float(values[i]))}</text>'
        )
    items.append(
        f'<line x1="{x(0.0):.1f}" y1="0" x2="{x(0.0):.1f}" y2="{bar_count * ROW_HEIGHT + 8}" '
        'stroke="#333"/>'
    )
    items.append("</svg>")
    note = ""
    if len(names) > bar_count:
        note = (
            f'<p class="note">The {bar_count} of {len(names)} features with the largest '
            "absolute values.</p>"
        )
    return "".join(items) + note


def value_colors(column: np.ndarray) -> list[str]:
    """Return a color per value by its rank within the column, blue (lowest) to red (highest)."""
    if len(column) < 2 or column.min() == column.max():
        return ["rgb(150, 150, 150)"] * len(column)
    ranks = np.argsort(np.argsort(column, kind="stable"), kind="stable") / (len(column) - 1)
    colors = LOW_COLOR[np.newaxis] + ranks[:, np.newaxis] * (HIGH_COLOR - LOW_COLOR)[np.newaxis]
    return [f"rgb({r:.0f}, {g:.0f}, {b:.0f})" for r, g, b in colors]


def summary_plot(names, values: np.ndarray, feature_values: np.ndarray, seed: int) -> str:
    """Return a beeswarm plot: one lane per feature, one dot per row at its SHAP value.

    Dots that fall into the same 3-pixel column of a lane are stacked alternately above and
    below the lane's centre line.
    """
    if len(values) > MAX_SUMMARY_DOTS:
        chosen = np.random.default_rng(seed).choice(len(values), MAX_SUMMARY_DOTS, replace=False)
        values, feature_values = values[chosen], feature_values[chosen]
    low, high = min(0.0, float(values.min())), max(0.0, float(values.max()))
    x = linear_scale(low, high, LABEL_WIDTH, LABEL_WIDTH + PLOT_WIDTH)
    lanes = len(names)
    height = lanes * ROW_HEIGHT + 80
    width = LABEL_WIDTH + PLOT_WIDTH + 40
    items = [f'<svg width="{width}" height="{height}" role="img" aria-label="summary plot">']
    items.append(
        f'<line x1="{x(0.0):.1f}" y1="0" x2="{x(0.0):.1f}" y2="{lanes * ROW_HEIGHT}" '
        'stroke="#999"/>'
    )
    for lane in range(lanes):
        centre = lane * ROW_HEIGHT + ROW_HEIGHT / 2
        items.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{centre + 4:.1f}" text-anchor="end">'
            f"{escape(names[lane])}</text>"
        )
        colors = value_colors(feature_values[:, lane])
        stacked: dict[int, int] = {}
        for value, color in zip(values[:, lane], colors, strict=True):
            px = x(float(value))
            column = int(px // 3)
            count = stacked.get(column, 0)
            stacked[column] = count + 1
            offset = min((count + 1) // 2 * 2.2, ROW_HEIGHT / 2 - 2) * (1 if count % 2 else -1)
            items.append(
                f'<circle cx="{px:.1f}" cy="{centre + offset:.1f}" r="2.2" fill="{color}"/>'
            )
    axis_y = lanes * ROW_HEIGHT + 5
    items.append(axis(x, low, high, axis_y, "SHAP value (change of the score)"))
    # The color legend: 20 steps from low to high feature value.
    legend_x = LABEL_WIDTH + PLOT_WIDTH - 200
    legend_y = axis_y + 55
    steps = 20
    for step in range(steps):
        r, g, b = LOW_COLOR + step / (steps - 1) * (HIGH_COLOR - LOW_COLOR)
        items.append(
            f'<rect x="{legend_x + 60 + step * 5}" y="{legend_y - 9}" width="5" height="10" '
            f'fill="rgb({r:.0f}, {g:.0f}, {b:.0f})"/>'
        )
    items.append(
        f'<text x="{legend_x + 55}" y="{legend_y}" text-anchor="end">feature value: low</text>'
        f'<text x="{legend_x + 165}" y="{legend_y}">high</text>'
    )
    items.append("</svg>")
    return "".join(items)


def nice_ticks(low: float, high: float, count: int = 5) -> np.ndarray:
    """Return round tick values within [low, high], about `count` of them, 1, 2 or 5 apart."""
    if high <= low:
        return np.array([low])
    rough = (high - low) / count
    magnitude = 10 ** np.floor(np.log10(rough))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= rough)
    ticks = np.arange(np.ceil(low / step) * step, high + step * 1e-9, step)
    # Rounding keeps values such as 0.30000000000000004 out of the labels.
    return np.round(ticks / step) * step


def axis(x, low: float, high: float, y: float, title: str) -> str:
    """Return a horizontal axis from `low` to `high` with round ticks and a title below it."""
    items = [f'<line x1="{x(low):.1f}" y1="{y}" x2="{x(high):.1f}" y2="{y}" stroke="#333"/>']
    for tick in nice_ticks(low, high):
        px = x(float(tick))
        items.append(
            f'<line x1="{px:.1f}" y1="{y}" x2="{px:.1f}" y2="{y + 4}" stroke="#333"/>'
            f'<text x="{px:.1f}" y="{y + 16}" text-anchor="middle">{number(float(tick))}</text>'
        )
    middle = (x(low) + x(high)) / 2
    items.append(f'<text x="{middle:.1f}" y="{y + 30}" text-anchor="middle">{escape(title)}</text>')
    return "".join(items)


def pdp_plot(entry: dict, centres: np.ndarray, units: str) -> str:
    """Return one partial dependence plot: mean score per bucket centre over grey bucket shares."""
    predictions = np.array(entry["model_predictions"][0])
    distribution = np.array(entry["data_distribution"])
    width, height = 340, 230
    left, right, top, bottom = 60, width - 15, 25, height - 50
    x = linear_scale(float(centres.min()), float(centres.max()), left + 8, right - 8)
    low, high = float(predictions.min()), float(predictions.max())
    pad = (high - low) * 0.1 or 0.5
    y = linear_scale(low - pad, high + pad, bottom, top)

    items = [f'<svg width="{width}" height="{height}" role="img" aria-label="partial dependence">']
    items.append(
        f'<text x="{width / 2}" y="14" text-anchor="middle">{escape(entry["feature_name"])}</text>'
    )
    bar_width = (right - left) / len(centres)
    tallest = float(distribution.max()) or 1.0
    for i, share in enumerate(distribution):
        bar_height = share / tallest * (bottom - top) * 0.3
        items.append(
            f'<rect x="{left + i * bar_width:.1f}" y="{bottom - bar_height:.1f}" '
            f'width="{bar_width * 0.9:.1f}" height="{bar_height:.1f}" fill="#ddd">'
            f"<title>{share:.1%} of documents</title></rect>"
        )
    points = " ".join(
        f"{x(float(c)):.1f},{y(float(p)):.1f}" for c, p in zip(centres, predictions, strict=True)
    )
    items.append(f'<polyline points="{points}" fill="none" stroke="rgb({RAISE_COLOR})"/>')
    for c, p in zip(centres, predictions, strict=True):
        items.append(f'<circle cx="{x(float(c)):.1f}" cy="{y(float(p)):.1f}" r="2" fill="#222"/>')
    items.append(
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#333"/>'
    )
    for value in (low, high):
        items.append(
            f'<text x="{left - 4}" y="{y(value) + 4:.1f}" text-anchor="end">{number(value)}</text>'
        )
    for c in sorted({float(centres[0]), float(centres[len(centres) // 2]), float(centres[-1])}):
        items.append(
            f'<text x="{x(c):.1f}" y="{bottom + 15}" text-anchor="middle">{number(c)}</text>'
        )
    items.append(
        f'<text x="{(left + right) / 2}" y="{bottom + 32}" text-anchor="middle">'
        f"value ({escape(units)})</text>"
    )
    items.append("</svg>")
    return f'<div class="pdp">{"".join(items)}</div>'


def query_table(query, explanation, feature_names, table_features, table_values, units) -> str:
    """Return a table of the first explained query's documents, one cell per table feature.

    `table_features` indexes the explained features to show and `table_values` contains
    their values [documents, table features] for the tooltips. Red cells raised the
    document's score above the expected value and blue cells lowered it. "other features"
    sums the SHAP values of every feature not in the table.
    """
    rows = slice(0, len(query.docs))
    values = explanation.values[rows]
    other = values.sum(axis=1) - values[:, table_features].sum(axis=1)
    if explanation.other_features is not None:
        other = other + explanation.other_features[rows]
    scores = explanation.scores[rows]
    scale = float(np.max(np.abs(np.concatenate([values[:, table_features].ravel(), other])))) or 1.0

    def cell(value: float, title: str = "") -> str:
        alpha = min(abs(value) / scale, 1.0) * 0.8
        color = RAISE_COLOR if value > 0 else LOWER_COLOR
        tooltip = f' title="{escape(title)}"' if title else ""
        return f'<td style="background: rgba({color}, {alpha:.2f})"{tooltip}>{value:+.3f}</td>'

    header = "".join(f"<th>{escape(feature_names[k])}</th>" for k in table_features)
    lines = [
        f"<p>Query {query.qid}: {len(query.docs)} documents, highest score first. Each cell is "
        "the SHAP value of one feature for one document: red raised the score above the "
        f"expected value {number(explanation.expected_value)}, blue lowered it. Hover over a "
        f"cell for the feature value ({escape(units)}).</p>",
        "<table><tr><th>rank</th><th>doc</th><th>label</th><th>score</th>"
        f"{header}<th>other features</th></tr>",
    ]
    for rank, index in enumerate(np.argsort(-scores, kind="stable"), start=1):
        cells = [
            cell(float(values[index, k]), f"value {number(float(table_values[index, column]))}")
            for column, k in enumerate(table_features)
        ]
        lines.append(
            f"<tr><td>{rank}</td><td>{int(query.docs[index])}</td>"
            f"<td>{int(query.labels[index])}</td><td>{number(float(scores[index]))}</td>"
            f"{''.join(cells)}{cell(float(other[index]))}</tr>"
        )
    lines.append("</table>")
    return "\n".join(lines)
