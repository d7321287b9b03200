"""The paper's three simulated datasets (§5): SIM1 (H1), SIM2 (H2, S->R), SIM3 (H2, R->S).

See docs/simulations.md for every generation choice; harness.data.sources.simulations re-exports the
three sources under the names the registry uses.
"""
