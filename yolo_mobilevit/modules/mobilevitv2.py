"""Placeholder: filled in by the mobilevitv2 work."""
