"""Compare the global SHAP values of two model package versions (`harness models --compare`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.errors import HarnessError

# The explainer whose values the explain step writes, as Clarify names it in analysis.json.
EXPLAINER = "kernel_shap"


@dataclass(frozen=True)
class ExplainedVersion:
    """One side of a comparison: a model package version and its analysis.json."""

    name: str  # <model package group>/<version>
    report_uri: str
    analysis: dict[str, Any]


@dataclass(frozen=True)
class FeatureChange:
    """One feature's global SHAP value in A and B, and its rank in each (1 is the largest |value|).

    Values and ranks are None for a feature that one version's report does not list.
    ``rank_change`` is rank A - rank B: positive when the feature moved up in B.
    """

    feature: str
    a: float | None
    b: float | None
    change: float | None
    rank_a: int | None
    rank_b: int | None
    rank_change: int | None


def global_shap_values(version: ExplainedVersion) -> tuple[str, dict[str, float]]:
    """Return (label, {feature: global SHAP value}) of Clarify's kernel_shap section.

    Raises:
        HarnessError: the report has no kernel_shap section with global SHAP values, or it
            explains several labels.
    """
    labels = version.analysis.get("explanations", {}).get(EXPLAINER) or {}
    if len(labels) != 1:
        found = "no label" if not labels else f"the labels {', '.join(labels)}"
        raise HarnessError(
            f"the explainability report of {version.name} at {version.report_uri} has "
            f"{found} under explanations.{EXPLAINER}, and harness compares one label. Fix: "
            "compare versions whose reports the explain step wrote."
        )
    label, explanation = next(iter(labels.items()))
    values = explanation.get("global_shap_values")
    if not isinstance(values, dict) or not values:
        raise HarnessError(
            f"the explainability report of {version.name} at {version.report_uri} has no "
            f"global_shap_values under explanations.{EXPLAINER}.{label}. Fix: compare "
            "versions whose reports the explain step wrote."
        )
    return label, {str(name): float(value) for name, value in values.items()}


def _ranks(values: dict[str, float]) -> dict[str, int]:
    # The largest |value| ranks first, because a median aggregation can be negative. A tie
    # keeps the report's feature order.
    ordered = sorted(values, key=lambda name: -abs(values[name]))
    return {name: rank for rank, name in enumerate(ordered, start=1)}


def compare_global_shap(a: dict[str, float], b: dict[str, float]) -> list[FeatureChange]:
    """Return one FeatureChange per feature of A or B, ordered by rank in B, then in A."""
    ranks_a, ranks_b = _ranks(a), _ranks(b)
    features = list(b) + [name for name in a if name not in b]
    changes = []
    for name in features:
        value_a, value_b = a.get(name), b.get(name)
        rank_a, rank_b = ranks_a.get(name), ranks_b.get(name)
        changes.append(
            FeatureChange(
                feature=name,
                a=value_a,
                b=value_b,
                change=None if value_a is None or value_b is None else value_b - value_a,
                rank_a=rank_a,
                rank_b=rank_b,
                rank_change=None if rank_a is None or rank_b is None else rank_a - rank_b,
            )
        )
    last = len(features) + 1
    changes.sort(key=lambda row: (row.rank_b or last, row.rank_a or last))
    return changes


@dataclass(frozen=True)
class Comparison:
    """The comparison that `harness models --compare A B` prints."""

    a: ExplainedVersion
    b: ExplainedVersion
    label: str
    agg_method_a: str
    agg_method_b: str
    features: list[FeatureChange]

    def to_json(self) -> dict[str, Any]:
        return {
            "a": {"model_package": self.a.name, "explainability_report": self.a.report_uri},
            "b": {"model_package": self.b.name, "explainability_report": self.b.report_uri},
            "label": self.label,
            "agg_method": {"a": self.agg_method_a, "b": self.agg_method_b},
            "features": [asdict(row) for row in self.features],
        }


def compare_versions(a: ExplainedVersion, b: ExplainedVersion) -> Comparison:
    """Compare the global SHAP values of two versions' reports."""
    label_a, values_a = global_shap_values(a)
    label_b, values_b = global_shap_values(b)
    if label_a != label_b:
        raise HarnessError(
            f"{a.name} explains the label {label_a!r} and {b.name} the label {label_b!r}, so "
            "their SHAP values are not comparable. Fix: compare versions that explain the "
            "same model output."
        )
    return Comparison(
        a=a,
        b=b,
        label=label_a,
        agg_method_a=str(a.analysis.get("explainer", {}).get("agg_method", "")),
        agg_method_b=str(b.analysis.get("explainer", {}).get("agg_method", "")),
        features=compare_global_shap(values_a, values_b),
    )


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _rank_change(row: FeatureChange) -> str:
    if row.rank_a is None:
        return "only in B"
    if row.rank_b is None:
        return "only in A"
    text = f"{row.rank_a} -> {row.rank_b}"
    if row.rank_change:
        text += f" ({row.rank_change:+d})"
    return text


def print_comparison(console: Console, comparison: Comparison) -> None:
    """Print the comparison as a table, one row per feature, B's most important first."""
    method = comparison.agg_method_b or comparison.agg_method_a or "global"
    table = Table(
        title=f"Global SHAP values of the {comparison.label} ({method})",
        title_justify="left",
        caption="rank 1 is the largest |value|, (+n) is n places up in B",
        caption_justify="left",
    )
    table.add_column("feature", no_wrap=True)
    for column in ("A", "B", "change", "rank change"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in comparison.features:
        style = ""
        if (row.rank_change or 0) > 0:
            style = "green"
        elif (row.rank_change or 0) < 0:
            style = "red"
        rank = _rank_change(row)
        table.add_row(
            escape(row.feature),
            _number(row.a),
            _number(row.b),
            _number(row.change, signed=True),
            f"[{style}]{rank}[/{style}]" if style else rank,
        )
    console.print(table)
    if comparison.agg_method_a != comparison.agg_method_b:
        console.print(
            f"[yellow]warning:[/yellow] A aggregates local values with "
            f"{comparison.agg_method_a or 'an unknown method'} and B with "
            f"{comparison.agg_method_b or 'an unknown method'}, so the values differ in kind; "
            "compare the ranks only.",
            soft_wrap=True,
        )
    console.print(f"A = {comparison.a.name}: {comparison.a.report_uri}", soft_wrap=True)
    console.print(f"B = {comparison.b.name}: {comparison.b.report_uri}", soft_wrap=True)
