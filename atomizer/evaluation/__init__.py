"""atomizer.evaluation (work in progress)."""
