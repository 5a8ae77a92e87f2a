"""genofed: a federated genomic data node (1+MG) in one package."""

__version__ = "0.1.0"
