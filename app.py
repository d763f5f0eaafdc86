#!/usr/bin/env python3
"""CDK entry point: builds the `Cloudstrype-<stage>` stack with a nested stack per service (see
infra/stack.py for both and for its context values).

    npx aws-cdk@2 deploy -c stage=prod      # cdk.json runs this file with .venv/bin/python
"""
import os
import sys
from pathlib import Path

import aws_cdk as cdk

REPO = Path(__file__).resolve().parent
# The stack reads the services' route tables, so the shared library must be importable even when
# the project is not pip-installed into the interpreter running this file.
for path in (REPO, REPO / "layers" / "shared" / "python"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from infra.stack import stack_from_context  # noqa: E402

app = cdk.App()
stack_from_context(app, env=cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
                                            region=os.environ.get("CDK_DEFAULT_REGION")))
app.synth()
