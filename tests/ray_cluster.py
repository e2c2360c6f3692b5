"""A local Ray cluster for the tests whose actors unpickle this folder's classes."""

import os
from pathlib import Path


def start_local_ray_cluster(ray, num_cpus: int = 2) -> None:
    """`ray.init` a local cluster whose workers can import this folder's modules (the test
    policy classes): Ray's workers inherit the driver's environment, so this folder goes on
    PYTHONPATH while the cluster starts (a runtime_env would start slower)."""
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), path]))
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    finally:
        if path is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = path
