"""ppg-mi: streaming myocardial-infarction detection from PPG recordings over Apache Kafka."""

__version__ = "0.1.0"
