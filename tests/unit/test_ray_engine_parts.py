"""The Ray engine's pure parts, without Ray: addresses, the node probe and what it reports, engine options."""

from __future__ import annotations

import socket

import pytest

from rehab import __version__
from rehab.batch import BatchError
from rehab.batch_cli import check_engine_options
from rehab.batch_ray import REQUIRED_MODULES, _node_problems, check_reachable, split_address
from rehab.batch_ray_probe import probe_node
from tests.ray_cluster import not_ray_server


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:6379", ("127.0.0.1", 6379)),
    ("ray://head.clinic.lan:10001", ("head.clinic.lan", 10001)),
    ("[::1]:6379", ("::1", 6379)),
])
def test_split_address(address, expected):
    assert split_address(address) == expected


@pytest.mark.parametrize("address", ["head", "head:", ":6379", "ray://", "head:port"])
def test_split_address_rejects_what_ray_would_not_take(address):
    with pytest.raises(ValueError, match="--address must be auto, HOST:PORT or ray://HOST:PORT"):
        split_address(address)


def test_check_reachable_refused_and_not_grpc():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BatchError, match=rf"no Ray cluster at 127.0.0.1:{port}: Connection refused"):
        check_reachable(f"127.0.0.1:{port}")
    with not_ray_server(b"SSH-2.0-OpenSSH_9.6\r\n") as address:
        with pytest.raises(BatchError, match="something answers at .* but not a Ray cluster"):
            check_reachable(address)


def test_probe_reports_missing_packages_unshared_output_and_inputs(tmp_path):
    token = tmp_path / "out" / ".rehab-ray-run.abc"
    token.parent.mkdir()
    video = tmp_path / "a.mp4"
    video.write_bytes(b"x")
    report = probe_node(str(token), ["rehab", "no_such_package_xyz"], [str(video), str(tmp_path / "gone.mp4")])
    assert report["version"] == __version__
    assert list(report["missing"]) == ["no_such_package_xyz"]
    assert "does not see" in report["output"]
    assert report["sources_missing"] == 1 and report["sources_shown"] == [str(tmp_path / "gone.mp4")]
    problems = _node_problems("10.0.0.7 (node7)", report, token.parent)
    assert any("lacks no_such_package_xyz (No module named 'no_such_package_xyz')" in p
               and "pip install 'rehab-pose[cluster]'" in p for p in problems), problems
    assert any("must be one folder that every node can write" in p for p in problems), problems
    assert any("does not see 1 input video(s)" in p for p in problems), problems

    token.write_text("driver\n")
    report = probe_node(str(token), list(REQUIRED_MODULES), [str(video)])
    assert report["missing"] == {} and report["output"] == "" and report["sources_missing"] == 0
    assert _node_problems("10.0.0.7 (node7)", report, token.parent) == []
    assert sorted(p.name for p in token.parent.iterdir()) == [token.name], "the write test leaves nothing"


def test_engine_options_that_do_not_fit_are_errors():
    check_engine_options("local", 2, None, None)
    check_engine_options("ray", 1, "auto", 2)
    with pytest.raises(ValueError, match="--engine must be one of local, ray"):
        check_engine_options("spark", 1, None, None)
    with pytest.raises(ValueError, match="options of --engine ray"):
        check_engine_options("local", 1, "10.0.0.1:6379", None)
    with pytest.raises(ValueError, match="--workers is for --engine local"):
        check_engine_options("ray", 4, None, None)
