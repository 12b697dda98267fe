"""Pure domain of model sync: event parsing, selection, command building, orchestration.

Nothing here imports boto3/botocore/aiohttp or reads the environment; a unit test keeps it so.
"""
