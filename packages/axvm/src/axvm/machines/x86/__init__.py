"""The x86_64 PC machine: boot structures, tables and platform devices."""

from . import layout
from .e820 import E820Entry, e820_map
from .linux import boot_params, minimal_setup_header
from .mptable import mp_table

__all__ = ["E820Entry", "boot_params", "e820_map", "layout", "minimal_setup_header", "mp_table"]
