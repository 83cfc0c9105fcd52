"""Keys for the clean room: virtual attestation, the key service and key release.

A party's KEK lives in the key service and leaves it only wrapped to a workload whose
attested policy hash equals the clean-room policy its contract accepted.
"""
