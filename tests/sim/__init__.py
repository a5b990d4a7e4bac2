"""A deterministic simulator for the Raft core: one integer seed reproduces a whole run.

Network (drop, delay, duplicate, reorder, partitions, a zone cut off), disk (a crash
loses what was not synced), clocks (per-node tick rates), crashes, restarts, leader
transfers and trims are all drawn from generators derived from the seed. Checkers watch
the run and raise `Violation` on the first broken invariant.

    python -m tests.sim --seed 7          # rerun one seed, print what happened
    python -m tests.sim --seeds 1-500     # a range; stops at the first violation
"""
