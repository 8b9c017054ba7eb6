"""`phalanx operator`: the controller core on a Kubernetes cluster, with leader election and a work queue."""
