"""The ``pageholder`` command: the only code that prints."""
