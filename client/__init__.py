"""pageholder client: talk to a pageholder registry."""
