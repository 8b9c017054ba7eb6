"""The Kubernetes runtime: the controller core's actions applied to a cluster through lightkube."""
