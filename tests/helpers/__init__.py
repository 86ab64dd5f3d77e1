"""What the tests share and do not test: loopback servers (the fault-injecting OpenAI-compatible server,
a recording server for the other providers' APIs, a fake GitHub), the headless browser, and the API contract
validation. ``pyproject.toml`` puts ``tests/`` on ``sys.path``, so a test imports ``helpers.<name>``."""
