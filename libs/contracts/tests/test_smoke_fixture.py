import boto3
import pytest

pytestmark = pytest.mark.integration


def test_aws_fixture_points_boto_at_a_clean_emulator(aws):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="probe", CreateBucketConfiguration={"LocationConstraint": aws.region})
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["probe"]


def test_state_is_reset_between_tests(aws):
    assert boto3.client("s3").list_buckets()["Buckets"] == []
