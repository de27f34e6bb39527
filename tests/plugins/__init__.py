"""Plug-in files the tests pass to the harness (`plugins=`): loaded by the planning worker only."""

from pathlib import Path

UNFAIR = str(Path(__file__).with_name("unfair.py"))
CHEATS = str(Path(__file__).with_name("cheats.py"))
