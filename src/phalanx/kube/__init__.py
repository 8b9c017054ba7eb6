"""What every Kubernetes-facing part shares: resource classes, cluster configuration, plain objects."""
