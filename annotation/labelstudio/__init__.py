"""Label Studio sync: push cases with a model's Go Zone as predictions, pull annotations back as versions."""

from annotation.labelstudio.client import LabelStudioError, SyncResult, connect, find_project
from annotation.labelstudio.payloads import UnusableAnnotation, labeling_config, read_result
from annotation.labelstudio.pull import pull
from annotation.labelstudio.push import push

__all__ = [
    "LabelStudioError",
    "SyncResult",
    "UnusableAnnotation",
    "connect",
    "find_project",
    "labeling_config",
    "pull",
    "push",
    "read_result",
]
