"""The management API on a socket: ``server`` (the aiohttp application and ``ApiServer``),
``listen`` (the Unix socket and the loopback port), ``schema`` (its JSON shapes), ``metrics``
(the Prometheus collector). Only the light modules are re-exported here, so that
``axvisor.client`` and ``axvisor ctl`` do not load the server (aiohttp) they never run."""

from .listen import default_socket_path

__all__ = ["default_socket_path"]
