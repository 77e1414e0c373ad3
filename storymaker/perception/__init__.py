"""Perception: face analysis, person segmentation, CLIP image features, pose detection and drawing.

Each capability is a Protocol (``base.py``) with a real implementation that loads its model lazily,
once, and a tiny stand-in for tests and smoke runs (labelled as such).
"""
