"""`harness models --compare`: ranks and changes of global SHAP values, and version names."""

from __future__ import annotations

import pytest
from rich.console import Console

from harness.errors import HarnessError
from harness.local.registry import explainability_report_uri, parse_version
from harness.report.explanations import (
    ExplainedVersion,
    compare_global_shap,
    compare_versions,
    print_comparison,
)


def analysis(values: dict[str, float], agg_method: str = "mean_abs", label: str = "score"):
    return {
        "version": "1.0",
        "explanations": {
            "kernel_shap": {label: {"global_shap_values": values, "expected_value": 0.1}}
        },
        "explainer": {"agg_method": agg_method},
    }


def version(name: str, values: dict[str, float], **settings) -> ExplainedVersion:
    return ExplainedVersion(name, f"s3://bucket/{name}/analysis.json", analysis(values, **settings))


def test_changes_and_ranks() -> None:
    rows = compare_global_shap({"f1": 0.3, "f2": 0.2, "f3": 0.1}, {"f1": 0.1, "f2": 0.4, "f3": 0.2})

    assert [row.feature for row in rows] == ["f2", "f3", "f1"]
    by_name = {row.feature: row for row in rows}
    assert by_name["f2"].change == pytest.approx(0.2)
    assert (by_name["f2"].rank_a, by_name["f2"].rank_b, by_name["f2"].rank_change) == (2, 1, 1)
    assert (by_name["f1"].rank_a, by_name["f1"].rank_b, by_name["f1"].rank_change) == (1, 3, -2)
    assert by_name["f3"].rank_change == 1


def test_rank_by_absolute_value() -> None:
    # A median aggregation keeps signs: -0.5 is the largest attribution.
    rows = compare_global_shap({"f1": 0.2, "f2": -0.5}, {"f1": 0.2, "f2": -0.5})

    assert [(row.feature, row.rank_b) for row in rows] == [("f2", 1), ("f1", 2)]


def test_ties_keep_report_order() -> None:
    rows = compare_global_shap({"f1": 0.0, "f2": 0.0}, {"f1": 0.0, "f2": 0.0})

    assert [(row.feature, row.rank_a, row.rank_b) for row in rows] == [("f1", 1, 1), ("f2", 2, 2)]


def test_feature_in_one_version_only() -> None:
    rows = compare_global_shap({"f1": 0.3, "f2": 0.1}, {"f1": 0.3, "f3": 0.2})

    by_name = {row.feature: row for row in rows}
    assert [row.feature for row in rows] == ["f1", "f3", "f2"]
    assert by_name["f3"].a is None
    assert by_name["f3"].change is None
    assert by_name["f3"].rank_change is None
    assert by_name["f2"].b is None
    assert by_name["f2"].rank_b is None


def test_table_lists_every_feature() -> None:
    comparison = compare_versions(
        version("ltr-ranking/1", {"f1": 0.3, "f2": 0.1}),
        version("ltr-ranking/2", {"f1": 0.05, "f2": 0.2}),
    )
    console = Console(record=True, width=120)

    print_comparison(console, comparison)

    text = console.export_text()
    assert "│ f2      │ 0.1000 │ 0.2000 │ +0.1000 │ 2 -> 1 (+1) │" in text
    assert "│ f1      │ 0.3000 │ 0.0500 │ -0.2500 │ 1 -> 2 (-1) │" in text
    assert "A = ltr-ranking/1: s3://bucket/ltr-ranking/1/analysis.json" in text
    assert "warning" not in text


def test_table_warns_about_aggregations() -> None:
    comparison = compare_versions(
        version("ltr-ranking/1", {"f1": 0.3}, agg_method="mean_abs"),
        version("ltr-ranking/2", {"f1": 0.1}, agg_method="median"),
    )
    console = Console(record=True, width=200)

    print_comparison(console, comparison)

    assert "A aggregates local values with mean_abs and B with median" in console.export_text()


def test_report_without_shap_values_rejected() -> None:
    broken = ExplainedVersion("ltr-ranking/4", "s3://bucket/a.json", {"explanations": {}})

    with pytest.raises(HarnessError, match="ltr-ranking/4 .* has no label under"):
        compare_versions(broken, version("ltr-ranking/2", {"f1": 0.1}))


def test_different_labels_rejected() -> None:
    with pytest.raises(HarnessError, match="not comparable"):
        compare_versions(
            version("ltr-ranking/1", {"f1": 0.3}, label="score"),
            version("ltr-ranking/2", {"f1": 0.3}, label="probability"),
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", ("ltr-ranking", 3)),
        ("other-group/12", ("other-group", 12)),
        (" 2 ", ("ltr-ranking", 2)),
    ],
)
def test_version_forms(text: str, expected: tuple[str, int]) -> None:
    assert parse_version(text, "ltr-ranking") == expected


@pytest.mark.parametrize("text", ["latest", "v3", "ltr-ranking/", "arn:aws:sagemaker:x"])
def test_invalid_version_rejected(text: str) -> None:
    with pytest.raises(HarnessError, match="not a model package version"):
        parse_version(text, "ltr-ranking")


def test_version_without_group_needs_register_section() -> None:
    with pytest.raises(HarnessError, match="pass <model package group>/<version>"):
        parse_version("3", None)


def test_report_uri_of_package() -> None:
    report = {"ContentType": "application/json", "S3Uri": "s3://bucket/analysis.json"}
    package = {"ModelMetrics": {"Explainability": {"Report": report}}}

    assert explainability_report_uri(package) == "s3://bucket/analysis.json"
    assert explainability_report_uri({"ModelMetrics": {"ModelQuality": {}}}) is None
    assert explainability_report_uri({}) is None
