"""pageholder service: the registry core and its HTTP API."""
