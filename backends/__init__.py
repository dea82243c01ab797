"""Backends: code generators and architecture targets built from the layered model."""
