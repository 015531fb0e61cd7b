"""Tokens: decoded pixels to what the network reads, exactly as the original makes them.

:mod:`.preprocess` holds the original's rules in NumPy (the one source of truth);
:mod:`.preprocess_torch` the same rules in torch, on any device; :mod:`.packed` the one packed
type; :mod:`.preprocessor` the picklable settings and functions; :mod:`.pipeline` (with
:mod:`.shm` and :mod:`.watchdog`) decodes ahead of the model in worker processes.
"""
