"""Execution backends; each lives in its own subpackage and is imported only by name (kvm, soft)."""
