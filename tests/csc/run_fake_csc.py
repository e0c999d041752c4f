"""Run the AuxTelWEP CSC with `csc_fakes.fake_processor` as ``run_auxtelwep`` would (for test_csc_crash.py).

Usage: ``python run_fake_csc.py --state enabled --configdir DIR``. DDS domain and partition come from the
environment; ``$AUXTELWEP_FAKE_SLEEP_S`` sets how long the fake processor takes.
"""

import asyncio
import sys
from pathlib import Path

if __name__ == "__main__":  # spawn workers import this file as __mp_main__: they must not start a CSC
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from csc_fakes import fake_processor

    from lsst.ts.auxtelwep.csc import AuxTelWepCsc

    asyncio.run(AuxTelWepCsc.amain(index=None, processor=fake_processor))
