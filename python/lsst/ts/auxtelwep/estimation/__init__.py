"""Wavefront estimation from donut pairs: TIE, forward-model fit (danish), combination over donuts."""
