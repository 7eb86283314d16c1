"""Two-colors (Flennerhag et al., ICLR 2022, 5.1): config (no JAX), system, report, sweep."""
