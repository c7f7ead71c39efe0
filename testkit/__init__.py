"""Helpers the tests, the benchmarks (bench/) and the rehearsal (scripts/) share.

Nothing here is part of the service or its image: ports (`testkit.ports`), starting and stopping
processes (`testkit.processes`), the real service under gunicorn (`testkit.live`), a stand-in HTTP
server on loopback (`testkit.http`) and the docker client (`testkit.docker`). Standard library
only, so the rehearsal can import it as a script.
"""
