"""Runtimes: where pods really run. `local` runs them as child processes; `kubernetes` on a cluster."""
