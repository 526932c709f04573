"""A loopback S3 server (moto's server mode) for the storage tests: no network beyond 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from recflow.runtime import storage

SECRET = "s3cr3t-never-logged-Zq81"
BUCKET = "recflow-test"


def forget_clients() -> None:
    import s3fs

    storage._filesystem.cache_clear()
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def s3(tmp_path_factory, request):
    """A moto S3 server on 127.0.0.1 (a free port), a bucket, and the environment pointing at a prefix of the module's own.

    moto keeps its buckets per process, not per server: each module gets a fresh prefix."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        mp.setenv("AWS_ACCESS_KEY_ID", "recflow-test-key")
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
        # the tracking store stays a database, apart from the mirror that tests wipe (a team's would be a server)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path_factory.mktemp('tracking') / 'mlflow.db'}")
        mp.setenv("RECFLOW_HOME", f"s3://{BUCKET}/{request.module.__name__.rpartition('.')[2]}")
        mp.setenv("RECFLOW_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.chdir(Path(__file__).resolve().parents[2])
        forget_clients()  # fsspec caches filesystems (and their endpoint) per process: none from another server
        remote = storage.configured_remote()
        remote.fs.makedirs(BUCKET, exist_ok=True)
        yield remote
        forget_clients()
    server.stop()
