"""oda-fed: privacy-preserving federated record linkage and disclosure-controlled analysis."""

__version__ = "0.1.0"
