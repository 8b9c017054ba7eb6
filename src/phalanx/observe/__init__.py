"""ModelServing and AutoscalingPolicy status as Prometheus metrics, for the operator and `phalanx up`."""
