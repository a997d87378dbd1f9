"""The shared kernel of both floors: typed errors, the registry class, atomic file writes."""
