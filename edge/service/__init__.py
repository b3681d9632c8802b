"""The loop as a systemd service on a rig: the unit (unit.py) and installing and watching it
(systemd.py). Imports no other role but errors, config and the record (for the status)."""
