"""Small HTTP helpers shared by the simulator, the router and the control endpoint."""
