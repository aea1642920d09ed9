"""The management API on a socket: the aiohttp server, where it listens, its JSON shapes."""

from .listen import default_socket_path
from .server import ROUTES, ApiServer, make_app, openapi_path

__all__ = ["ROUTES", "ApiServer", "default_socket_path", "make_app", "openapi_path"]
