"""`bertkit serve`'s checks before anything loads: a missing optional extra and a port in use are
one line each, with the fix."""

from __future__ import annotations

import importlib
import sys

import pytest

from bertkit.cli.main import main
from bertkit.serve.server import bind


def without(monkeypatch, *modules: str) -> None:
    """Import as if `modules` were not installed; bertkit.serve is imported afresh."""
    for name in list(sys.modules):
        if name.startswith("bertkit.serve"):
            monkeypatch.delitem(sys.modules, name)
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` raises ModuleNotFoundError


@pytest.mark.parametrize("missing", ["fastapi", "uvicorn", "prometheus_client"])
def test_serve_without_the_serve_extra_is_one_line(monkeypatch, capsys, missing):
    without(monkeypatch, missing)
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == (f"bertkit serve: error: bertkit serve needs the serve extra ({missing} is not "
                                       f"installed): pip install 'bertkit[serve]'\n")


def test_serve_with_ray_without_ray_is_one_line(monkeypatch, capsys):
    without(monkeypatch, "ray")
    assert main(["serve", "--ray", "--port", "0"]) == 2
    assert capsys.readouterr().err == "bertkit serve: error: --ray needs Ray Serve: pip install 'bertkit[ray]'\n"


def test_a_port_in_use_fails_before_the_models_load(monkeypatch, capsys):
    pipelines = importlib.import_module("bertkit.inference.pipeline")  # the module: the package exports the function

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the port was checked")

    monkeypatch.setattr(pipelines, "pipeline", no_loading)
    taken = bind("127.0.0.1", 0)
    taken.listen()
    try:
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    finally:
        taken.close()
    assert capsys.readouterr().err == (f"bertkit serve: error: --port {port}: cannot listen on 127.0.0.1:{port}: "
                                       f"Address already in use (another server is using it; stop it or pick "
                                       f"another --port)\n")
