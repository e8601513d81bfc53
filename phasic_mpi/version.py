"""The package version (its own module so that every layer can import it
without importing the package's public namespace)."""

__version__ = "0.1.0"
