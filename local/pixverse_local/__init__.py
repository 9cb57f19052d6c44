"""Local stack for the PixVerse jobs pipeline: gateway simulator, AWS emulator wiring, local HTTP API."""
