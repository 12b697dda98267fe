"""Container registry for the images sdq builds (the queue agent; runtimes are the user's)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from cdktf_cdktf_provider_aws.ecr_lifecycle_policy import EcrLifecyclePolicy
from cdktf_cdktf_provider_aws.ecr_repository import (
    EcrRepository,
    EcrRepositoryEncryptionConfiguration,
    EcrRepositoryImageScanningConfiguration,
)
from constructs import Construct

# Untagged layers left behind by superseded pushes are dropped after this many days.
UNTAGGED_RETENTION_DAYS = 14


@dataclass(frozen=True)
class RepositorySpec:
    name: str


@dataclass(frozen=True)
class RepositoryOutputs:
    url: str
    arn: str


class ImageRepository(Construct):
    def __init__(self, scope: Construct, construct_id: str, spec: RepositorySpec) -> None:
        super().__init__(scope, construct_id)
        repo = EcrRepository(
            self,
            "repository",
            name=spec.name,
            # A version tag names one image forever: releases never overwrite each other.
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=EcrRepositoryImageScanningConfiguration(scan_on_push=True),
            encryption_configuration=[EcrRepositoryEncryptionConfiguration(encryption_type="KMS")],
        )
        EcrLifecyclePolicy(
            self,
            "lifecycle",
            repository=repo.name,
            policy=json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "description": "expire untagged images",
                            "selection": {
                                "tagStatus": "untagged",
                                "countType": "sinceImagePushed",
                                "countUnit": "days",
                                "countNumber": UNTAGGED_RETENTION_DAYS,
                            },
                            "action": {"type": "expire"},
                        }
                    ]
                }
            ),
        )
        self.outputs = RepositoryOutputs(url=repo.repository_url, arn=repo.arn)
