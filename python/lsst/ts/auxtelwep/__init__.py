"""ts_auxtelwep: wavefront estimation service (CSC ``AuxTelWEP``) of the Rubin Auxiliary Telescope."""

from .errors import *  # noqa: F403

__version__ = "0.1.0"
