"""Pure domain of the API front door: no boto3, no HTTP library, no environment access."""
