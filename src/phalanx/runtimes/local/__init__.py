"""The local runtime: an in-memory object store, a gang-aware GPU scheduler and a process kubelet."""
