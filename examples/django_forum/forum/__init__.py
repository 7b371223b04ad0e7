"""The forum app of the MODX forums example."""
