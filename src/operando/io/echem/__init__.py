"""Cycler logs and the potentiostat's trigger record."""
