"""Model-based selectors for vecaf-bench, written only against `vecaf_bench.api` (API 1.0):
`entropy` (max predictive entropy) and `badge` (BADGE, Ash et al., ICLR 2020)."""

__version__ = "0.1.0"
