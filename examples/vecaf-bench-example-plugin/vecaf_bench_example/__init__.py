"""An example third-party plugin package for vecaf-bench."""

__version__ = "0.1.0"
