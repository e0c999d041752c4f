"""Fixtures of the ISR tests (the scene itself is in ``isr_truth.py``)."""

from isr_truth import truth

__all__ = ["truth"]
