"""Pipeline stages: one module per stage, each with one typed public function (see docs/design.md)."""
