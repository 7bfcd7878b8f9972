"""The core wing: step geometry, objectives, the traversal generator, PGD, torch's threads.

Imports nothing else of the engine: every other wing builds on it.
"""
