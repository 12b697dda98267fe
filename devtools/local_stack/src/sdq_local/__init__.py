"""placeholder package init (replaced as the package is built)."""
