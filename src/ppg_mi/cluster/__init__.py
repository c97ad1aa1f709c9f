"""``ppg-mi cluster``: watch, scale and check a release through the official Kubernetes client.

Modules
-------
errors
    The errors a user can act on, their exit codes and one-line messages.
api
    Connecting (kubeconfig or in-cluster) and finding a release's objects by its labels.
broker
    What the broker says about a release: partitions, consumer lag, the canary round trip.
status
    ``ppg-mi cluster status``: collect, then render as a table or JSON.
scale
    ``ppg-mi cluster scale``: KEDA pause or scale subresource, then wait.
check
    ``ppg-mi cluster check``: objects ready and a canary recording predicted (the ``helm test`` pod).

Nothing here shells out to kubectl and nothing sends traffic to a pod IP: every read goes
through the API server, and the model version of a classifier pod is read by running
``ppg-mi probe /readyz`` in the pod through the API (``pods/exec``).
"""
