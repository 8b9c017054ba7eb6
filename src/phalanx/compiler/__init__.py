"""From the high-level ModelDeployment to the ModelServing that runs it."""

from phalanx.compiler.deployment import Compiled, compile_deployment

__all__ = ["Compiled", "compile_deployment"]
