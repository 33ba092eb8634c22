"""AtomSet: the one currency between readers, encoders, models, datasets and the CLI."""

from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.atoms.batch import AtomBatch, collate_atoms
from atomizer.atoms.io import AtomsFile, load_atoms, open_atoms, save_atoms

__all__ = ["AtomBatch", "AtomSet", "collate_atoms", "AtomsFile", "SceneMeta", "load_atoms", "open_atoms", "save_atoms"]
