"""Comparative robustness reports (HTML, PDF, Markdown) and stored robustness baselines."""
