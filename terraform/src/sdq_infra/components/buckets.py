"""A private S3 bucket: public access blocked, owner-enforced, encrypted, TLS-only, incomplete
multipart uploads aborted, optionally versioned."""

from __future__ import annotations

import json
from dataclasses import dataclass

from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket
from cdktf_cdktf_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
    S3BucketLifecycleConfigurationRuleFilter,
)
from cdktf_cdktf_provider_aws.s3_bucket_ownership_controls import (
    S3BucketOwnershipControls,
    S3BucketOwnershipControlsRule,
)
from cdktf_cdktf_provider_aws.s3_bucket_policy import S3BucketPolicy
from cdktf_cdktf_provider_aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock
from cdktf_cdktf_provider_aws.s3_bucket_server_side_encryption_configuration import (
    S3BucketServerSideEncryptionConfigurationA,
    S3BucketServerSideEncryptionConfigurationRuleA,
    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA,
)
from cdktf_cdktf_provider_aws.s3_bucket_versioning import (
    S3BucketVersioningA,
    S3BucketVersioningVersioningConfiguration,
)
from constructs import Construct


@dataclass(frozen=True)
class BucketSpec:
    name: str
    versioned: bool
    # Keep objects on `terraform destroy`? False refuses to destroy a non-empty bucket.
    force_destroy: bool = False
    # Deny every request without TLS (a bucket policy); the state stack keeps its own
    # stack-level policy resource (its state address predates this construct's).
    tls_only: bool = True


# Days after which S3 drops the parts of a multipart upload nobody completed or aborted (an
# agent killed while streaming a large output); parts are billed as storage until then.
ABORT_INCOMPLETE_UPLOADS_DAYS = 1


@dataclass(frozen=True)
class BucketOutputs:
    name: str
    arn: str


def tls_only_policy(bucket_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


class PrivateBucket(Construct):
    def __init__(self, scope: Construct, construct_id: str, spec: BucketSpec) -> None:
        super().__init__(scope, construct_id)
        bucket = S3Bucket(self, "bucket", bucket=spec.name, force_destroy=spec.force_destroy)
        public_access = S3BucketPublicAccessBlock(
            self,
            "public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
        )
        S3BucketOwnershipControls(
            self,
            "ownership",
            bucket=bucket.id,
            rule=S3BucketOwnershipControlsRule(object_ownership="BucketOwnerEnforced"),
        )
        # SSE-KMS with the AWS managed key: no key policy to maintain, and every IAM principal
        # of the account can use it through S3 (kms:ViaService), which is what sdq needs.
        S3BucketServerSideEncryptionConfigurationA(
            self,
            "encryption",
            bucket=bucket.id,
            rule=[
                S3BucketServerSideEncryptionConfigurationRuleA(
                    apply_server_side_encryption_by_default=(
                        S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                            sse_algorithm="aws:kms"
                        )
                    ),
                    bucket_key_enabled=True,
                )
            ],
        )
        # Every request must use TLS (aws:SecureTransport); the public access block above
        # must exist first or S3 may refuse the policy while it checks for public access.
        if spec.tls_only:
            S3BucketPolicy(
                self,
                "tls-only",
                bucket=bucket.id,
                policy=tls_only_policy(bucket.arn),
                depends_on=[public_access],
            )
        S3BucketLifecycleConfiguration(
            self,
            "lifecycle",
            bucket=bucket.id,
            rule=[
                S3BucketLifecycleConfigurationRule(
                    id="abort-incomplete-multipart-uploads",
                    status="Enabled",
                    # An empty prefix: the whole bucket (provider 5.x wants a filter or prefix).
                    filter=[S3BucketLifecycleConfigurationRuleFilter(prefix="")],
                    abort_incomplete_multipart_upload=[
                        S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(
                            days_after_initiation=ABORT_INCOMPLETE_UPLOADS_DAYS
                        )
                    ],
                )
            ],
        )
        if spec.versioned:
            S3BucketVersioningA(
                self,
                "versioning",
                bucket=bucket.id,
                versioning_configuration=S3BucketVersioningVersioningConfiguration(
                    status="Enabled"
                ),
            )
        self.bucket = bucket
        self.outputs = BucketOutputs(name=bucket.bucket, arn=bucket.arn)
