"""A GDB remote-protocol stub: the protocol sans-IO (``protocol``, ``session``), target
descriptions (``target_xml``), and the layer that drives a VM over a socket."""

from .protocol import MAX_PACKET, BadPacket, Interrupt, Packet, PacketReader, frame
from .session import BreakKind, DebugTarget, GdbSession, StopEvent
from .target_xml import DESCRIPTIONS, Register, TargetDescription, target_xml

__all__ = [
    "DESCRIPTIONS",
    "MAX_PACKET",
    "BadPacket",
    "BreakKind",
    "DebugTarget",
    "GdbSession",
    "Interrupt",
    "Packet",
    "PacketReader",
    "Register",
    "StopEvent",
    "TargetDescription",
    "frame",
    "target_xml",
]
