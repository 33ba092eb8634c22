"""AtomSet: the one currency between readers, encoders, models, datasets and the CLI.

``AtomBatch`` / ``collate_atoms`` need torch and are imported on first use only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from atomizer._lazy import lazy_exports
from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.atoms.io import AtomsFile, load_atoms, open_atoms, save_atoms

if TYPE_CHECKING:
    from atomizer.atoms.batch import AtomBatch, collate_atoms

__all__ = ["AtomBatch", "AtomSet", "AtomsFile", "SceneMeta", "collate_atoms", "load_atoms",
           "open_atoms", "save_atoms"]

__getattr__, __dir__ = lazy_exports(__name__, {"AtomBatch": "batch", "collate_atoms": "batch"})
