"""rectvit's benchmarks: ``python -m bench`` (``make bench``) writes docs/BENCHMARKS.md.

Modules: ``harness`` (alternating timing, FLOP counting, matmul peak, machine facts, the markdown
report), ``cases`` (peer/rectvit pairs on the same weights), ``memory`` (peak RSS of one call in a
subprocess), ``suites`` (sections (a)-(d) and memory).
"""
