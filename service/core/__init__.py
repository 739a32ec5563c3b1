"""The framework-free core: no HTTP, no database, no network of its own."""
