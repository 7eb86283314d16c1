"""bmg: Bootstrapped Meta-Learning in JAX."""

__version__ = "0.1.0"
