import sys

if sys.argv[1:2] == ["sim"]:
    # Engine pods start `phalanx sim` many times; skip the control plane's imports.
    from phalanx.sim.main import main as sim_main

    sys.exit(sim_main(sys.argv[2:]))

from phalanx.cli import main

main()
