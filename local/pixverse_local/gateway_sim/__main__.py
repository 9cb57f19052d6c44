"""Run the gateway simulator on its own: ``python -m pixverse_local.gateway_sim --port 8090 --api-key KEY``."""

from pixverse_local.gateway_sim.server import main

if __name__ == "__main__":
    raise SystemExit(main())
