"""The smoke client: a deployed service checked from outside, standard library only.

A client of the service, not part of it: it lives beside `service/`, never inside the runtime image.
Run it as `python -m smoke URL`.
"""
