"""The cloud target: the local plan compiled into a SageMaker Pipeline with the SDK v3.

- ``plan``: the plan as the cloud runs it, with content-addressed output locations.
- ``preflight``: every request checked against botocore's SageMaker model and the image
  tables before anything is uploaded.
- ``compile``: the SDK v3 steps of each job, and the pipeline definition.
- ``promote``: the uploads, the upsert and the execution.
"""
