"""Placeholder: filled in by the mobileformer work."""
