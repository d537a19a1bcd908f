"""Datasets: the built-in synthetic faces, and RaFD / FER2013 / image folders from disk."""

from .emotions import FER2013_CLASSES, RAFD_CLASSES
from .fer2013 import FER2013
from .in_memory import InMemory
from .rafd import RaFD
from .sources import load_splits
from .synthetic_faces import SyntheticFaces, render_face

__all__ = ["FER2013", "FER2013_CLASSES", "InMemory", "RAFD_CLASSES", "RaFD", "SyntheticFaces",
           "load_splits", "render_face"]
