"""Synthetic UK-like populations split across partners, with realistic errors and ground truth.

Used by ``oda-fed synth``, the demo and the benchmarks. Everything here is made up: the names come
from embedded frequency lists, the region and its wards do not exist, and no record describes a real
person.

Examples
--------
>>> from oda_fed.synth import generate
>>> data = generate(population=2000, partners=3, seed=7, errors="medium")
>>> sorted(data.truth.columns)
['person_id', 'record_id', 'source']
"""

from oda_fed.synth.boundaries import ward_boundaries, write_ward_boundaries
from oda_fed.synth.corruption import ErrorLevel
from oda_fed.synth.generator import Synthetic, SynthParameterError, error_level, generate, write
from oda_fed.synth.profiles import PROFILES, PartnerProfile
from oda_fed.synth.project import project_document, write_project

__all__ = [
    "PROFILES",
    "ErrorLevel",
    "PartnerProfile",
    "SynthParameterError",
    "Synthetic",
    "error_level",
    "generate",
    "project_document",
    "ward_boundaries",
    "write",
    "write_project",
    "write_ward_boundaries",
]
