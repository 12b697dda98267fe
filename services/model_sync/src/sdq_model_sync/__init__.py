"""sdq model sync: S3 model-bucket events → one SSM sync command on every GPU node of the cluster.

Entry point ``sdq_model_sync.handler.handle`` (AWS Lambda). The node side is the shell script
``services/model_sync/node/sdq-model-sync.sh``; ``sdq_model_sync.node_script`` locates it.
"""
