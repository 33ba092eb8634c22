"""atomizer.pretrain (work in progress)."""
