"""atomizer.simulate (work in progress)."""
