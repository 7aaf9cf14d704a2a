"""The leaderboard: reading finished runs (records), the statistics (stats), the rules that make
rows, targets and comparisons (rules), and their tables and plots (render, plots)."""
