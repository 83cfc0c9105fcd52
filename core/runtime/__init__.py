"""The clean-room runtime: deployment specs and policies, and the backends that run them.

``backend`` is the one interface the CLI uses (``DeploymentBackend``: generate the files the
parties vote on, then start/status/logs/stop), with a local and an Azure (ACI) implementation;
``aci_artifacts`` writes the ACI backend's ARM template and Key Vault SKR policy, ``aci`` drives
the container group. The local runtime (``local``, ``process``, ``sandbox``, ``ingress``)
attests, gets keys released, decrypts datasources into private mounts, runs each application in
a bubblewrap sandbox with no network, fronts it with a TLS ingress proxy, and seals datasinks
back to their owners on exit.
"""
