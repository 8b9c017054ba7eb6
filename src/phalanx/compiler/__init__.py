"""From the high-level ModelDeployment to the ModelServing that runs it."""

from phalanx.compiler.deployment import Compiled, compile_deployment, deployment_problems

__all__ = ["Compiled", "compile_deployment", "deployment_problems"]
