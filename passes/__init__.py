"""Passes: functions from graph to graph that keep the interpreter's outputs (see docs/architecture.md)."""
