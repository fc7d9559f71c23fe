"""Code shared by the pipeline steps.

Each step script adds the `steps/` folder to `sys.path` and imports these modules as
`from common import ...`, so they may depend only on the SageMaker container contract and
the step's own libraries, never on `harness`.
"""
