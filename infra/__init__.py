"""The Pulumi program's parts: one component per concern, composed by the root `__main__.py`.

Modules that the account setup (`account/`) and the deploy rehearsal import without Pulumi
(`state_hardening`, `user_data`, `release`) stay free of Pulumi imports; this package file imports nothing.
"""
