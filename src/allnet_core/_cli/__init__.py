"""Command modules of the ``allnet`` CLI (see :mod:`allnet_core.cli`)."""
