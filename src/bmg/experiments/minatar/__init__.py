"""MinAtar (gymnax) with IMPALA, STACX and STACX + BMG: its config (no JAX), system and report."""
