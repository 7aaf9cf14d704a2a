"""A model-based selector for vecaf-bench, written only against `vecaf_bench.api` (API 1.0):
`variation-ratios` (the disagreement of Monte-Carlo dropout predictions; Freeman, 1965)."""

__version__ = "0.2.0"
