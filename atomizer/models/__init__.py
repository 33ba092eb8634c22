"""atomizer.models (work in progress)."""
