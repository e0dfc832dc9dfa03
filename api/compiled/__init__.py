"""Compiled plans for registered documents: api/compiled/plan.py builds them, runner.py runs them."""
