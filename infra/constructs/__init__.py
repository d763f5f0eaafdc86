"""CDK constructs of the AWS deployment, one module per concern (the stack is infra/stack.py)."""
