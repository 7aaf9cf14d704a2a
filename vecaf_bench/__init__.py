"""vecaf-bench: run and compare active-finetuning selectors under matched budgets."""

__version__ = "0.1.0"
