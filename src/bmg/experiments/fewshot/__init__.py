"""Few-shot classification, MAML vs BMG (section 5.3): config (no JAX), system, report, data."""
