"""Decoding: bytes, files and arrays to ``(H, W, 3)`` uint8 RGB exactly as the original does.

:mod:`.sniff` tells a format from its first bytes; :mod:`.decode` decodes it (TF's settings).
"""
