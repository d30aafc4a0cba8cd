"""Subcommands of this part (registered into the `citywok` command)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this part's subcommands."""
