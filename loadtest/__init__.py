"""The load test's importable code: the open-model and closed-model recorders, request bodies,
load profiles, keep-alive handling and the Locust master's /metrics and web login.

locust/locustfile.py is the file Locust runs; it imports these by name. The package has a name of
its own because a folder named `locust` would shadow the Locust package itself.
"""
