"""The agent's pure domain: task pipeline, failure handling, request shaping.

No boto3/aioboto3/aiohttp/os.environ here (a unit test keeps it that way); the outside world
is reached through the protocols in :mod:`sdq_queue_agent.domain.ports`.
"""
