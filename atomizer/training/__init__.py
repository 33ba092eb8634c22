"""atomizer.training (work in progress)."""
