"""The plugin's errors that need no torch to import."""

from __future__ import annotations


class YamlRowError(ValueError):
    """A model YAML row that the plugin cannot build; the message names the file, the layer and section row, the
    row as the user wrote it, and what was expected."""
