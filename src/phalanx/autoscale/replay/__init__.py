"""A virtual-clock replayer for the autoscaler: a trace of requests, a capacity model of the units
that serve them, and any `Scaler` asked for a desired count every period. Pure and deterministic:
no sleeping, no wall clock, the same inputs give the same run."""
