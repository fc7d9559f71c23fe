"""harness: run a SageMaker ranking pipeline locally, then promote the same plan to the cloud."""

__version__ = "0.1.0"
