"""The package version (its own module, so that nothing imports it from the package root)."""
__version__ = "0.1.0"
