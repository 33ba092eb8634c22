"""atomizer.encoders (work in progress)."""
