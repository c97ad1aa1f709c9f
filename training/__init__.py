"""Training and evaluation entry points of ppg-mi's model (``ppg-mi train``, ``ppg-mi evaluate``)."""
