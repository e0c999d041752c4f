"""Simulated AuxTel: donut rendering (batoid + galsim), LATISS raws, calibrations, observatory peers."""
