"""Reports: report.md and a self-contained report.html from results.json (nothing is measured here)."""
