"""User tools built on the plugin: ``compare`` (models side by side), ``doctor`` (is the plugin live here?),
``features`` (backbone feature maps) and ``flops`` (MAC counts that include attention).

Nothing here is imported at start-up or by the integration; each tool imports what it needs when called.
"""
