"""The clean-room runtime: deployment specs and policies, and the local runtime that runs them.

The local runtime attests, gets keys released, decrypts datasources into private mounts, runs
each application in a bubblewrap sandbox with no network, fronts it with a TLS ingress proxy,
and seals datasinks back to their owners on exit.
"""
