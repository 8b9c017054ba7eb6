"""The embedded default: `phalanx up` runs the controller, the local runtime and the router in one process."""
