"""atomizer.readers (work in progress)."""
