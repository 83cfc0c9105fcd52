"""The onboarding workload: a provider's model version verified inside the clean room.

It walks one version (named by the contract's voted env) through the registry's statuses and
reports each as a ``model_status`` telemetry record, which the runtime takes out of the telemetry
stream and sends to governance with the clean room's attestation (core.runtime.model_status). The
package is checked and loaded with the same code `cleanroom model package check` runs
(core.onboarding), so what the clean room verifies is what the provider checked; the weights stay
in the clean room and only statuses and their details leave.
"""
