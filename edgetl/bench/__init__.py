"""Measurement: row planning, timing and accuracy, the results schema, budgets and the regression gate."""
