"""The SAL layer: DDS domain, topics from the interface XML, Controller, Remote, BaseCsc, ConfigurableCsc.

Names and semantics follow ts_salobj so Rubin scripts read naturally against it. Only `transport` imports
Cyclone DDS; the science code never imports this package. Quick use::

    from lsst.ts.auxtelwep.sal import BaseCsc, ConfigurableCsc, Domain, Remote, State

    async with Domain() as domain, Remote(domain, "AuxTelWEP") as remote:
        await remote.cmd_start.set_start(configurationOverride="", timeout=30)
        state = await remote.evt_summaryState.next(flush=False, timeout=10)
"""

from . import (
    auth,
    base,
    base_csc,
    commands,
    configurable_csc,
    controller,
    domain,
    interface,
    read_topic,
    remote,
    sal_info,
    testcsc,
    write_topic,
)
from .auth import *  # noqa: F403
from .base import *  # noqa: F403
from .base_csc import *  # noqa: F403
from .commands import *  # noqa: F403
from .configurable_csc import *  # noqa: F403
from .controller import *  # noqa: F403
from .domain import *  # noqa: F403
from .interface import *  # noqa: F403
from .read_topic import *  # noqa: F403
from .remote import *  # noqa: F403
from .sal_info import *  # noqa: F403
from .testcsc import *  # noqa: F403
from .write_topic import *  # noqa: F403

__all__ = sorted(
    {
        *auth.__all__,
        *base.__all__,
        *base_csc.__all__,
        *commands.__all__,
        *configurable_csc.__all__,
        *controller.__all__,
        *domain.__all__,
        *interface.__all__,
        *read_topic.__all__,
        *remote.__all__,
        *sal_info.__all__,
        *testcsc.__all__,
        *write_topic.__all__,
    }
)
