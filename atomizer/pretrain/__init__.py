"""SatMIP / SatMIPS: pretraining image encoders with metadata supervision (and SimCLR).

- :mod:`~atomizer.pretrain.metadata`: the per-sample metadata schema and its readers (STAC items,
  BigEarthNet JSON, fMoW JSON, AtomSets).
- :mod:`~atomizer.pretrain.metadata_encoders`: tabular (FT-Transformer-style) and text encoders.
- :mod:`~atomizer.pretrain.losses`: symmetric InfoNCE, NT-Xent, SatMIPS with or without view
  coupling, all DDP-correct.
- :mod:`~atomizer.pretrain.augment`: augmentations of AtomSets.
- :mod:`~atomizer.pretrain.chips`: chips + metadata + labels from the real data.
- :mod:`~atomizer.pretrain.pretrainer`, :mod:`~atomizer.pretrain.checkpoint`,
  :mod:`~atomizer.pretrain.compare`: training, checkpoints, the method comparison.

Importing this package loads nothing heavy; import the submodules you need.
"""
