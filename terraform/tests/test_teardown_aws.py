"""destroy's inventory of what blocks it, against the moto server."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import boto3
import pytest

from sdq_infra.teardown import Boto3Inventory

if TYPE_CHECKING:
    from sdq_testing.pytest_plugin import AwsTarget

pytestmark = pytest.mark.integration


def test_inventory_counts_objects_versions_and_images(aws: AwsTarget) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="full", CreateBucketConfiguration={"LocationConstraint": aws.region})
    s3.create_bucket(Bucket="empty", CreateBucketConfiguration={"LocationConstraint": aws.region})
    s3.put_bucket_versioning(Bucket="full", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="full", Key="a", Body=b"1")
    s3.put_object(Bucket="full", Key="a", Body=b"2")
    s3.delete_object(Bucket="full", Key="a")  # only versions and a delete marker remain
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="sdq/queue-agent")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"digest": "sha256:" + "0" * 64},
        "layers": [],
    }
    ecr.put_image(
        repositoryName="sdq/queue-agent", imageManifest=json.dumps(manifest), imageTag="1.0"
    )
    inventory = Boto3Inventory(aws.region, aws.endpoint_url)
    assert inventory.bucket_objects("full") == 3
    assert inventory.bucket_objects("empty") == 0
    assert inventory.bucket_objects("absent-bucket") is None
    assert inventory.repository_images("sdq/queue-agent") == 1
    assert inventory.repository_images("sdq/none") is None
