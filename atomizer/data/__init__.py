"""atomizer.data (work in progress)."""
