"""AtomSet: the one currency between readers, encoders, models, datasets and the CLI."""

from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.atoms.io import AtomsFile, load_atoms, open_atoms, save_atoms

__all__ = ["AtomSet", "AtomsFile", "SceneMeta", "load_atoms", "open_atoms", "save_atoms"]
