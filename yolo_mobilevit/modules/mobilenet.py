"""Placeholder: filled in by the mobilenet work."""
