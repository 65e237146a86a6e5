"""hymoerec: sequential recommendation with a Hybrid Mixture of Experts."""

__version__ = "0.1.0"
