"""The one timeout of the tests' subprocesses: a guard against hangs only, never a speed requirement.

Every subprocess test bounds its work (steps, scenes, files); this limit sits far above what that work takes
on a loaded 2-core machine (the slowest, tiny.yaml learning for 300 steps, takes minutes there), so a test
fails on it only when a process hangs.
"""
HANG_S = 3600
