"""Runs of the grid: the typed result row, the runner, the results database, the run lease, estimates."""
