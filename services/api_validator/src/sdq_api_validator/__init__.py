"""sdq api_validator: the Lambda behind API Gateway that validates, records and queues tasks."""
