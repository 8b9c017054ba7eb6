"""The autoscaler's pure core: from a policy, the signals of one pass and the history of earlier
passes to a desired replica count, with the reason. No I/O: the operator and `phalanx up` gather
the signals and carry out the decision."""
