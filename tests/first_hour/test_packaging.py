"""pyngest as a package: ``python -m build`` makes a wheel and an sdist; each installs into a
clean virtualenv and ``pyngest dev`` from it serves the Event API, GraphQL and the dashboard.
Every file of the package that is not Python (the dashboard, SQL, the GraphQL schema) is in
both."""

from __future__ import annotations

import socket
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.first_hour.shell import background, checkout_copy, run, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _data_files(work: Path) -> set[str]:
    package = work / "src"
    return {
        str(p.relative_to(package)) for p in (package / "pyngest").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }


def _serves(venv: Path, tmp: Path, name: str) -> None:
    port = _free_port()
    log = tmp / f"{name}.log"
    command = f"{venv}/bin/pyngest dev -p {port} --no-discovery --sqlite-dir {tmp / name}"
    with background(command, tmp, log) as server:
        base = f"http://127.0.0.1:{port}"
        assert wait_for(f"{base}/health", server, log).status_code == 200
        page = httpx.get(f"{base}/", timeout=10, follow_redirects=True)
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert httpx.get(f"{base}/static/app.js", timeout=10).status_code == 200
        sent = httpx.post(f"{base}/e/dev", json={"name": "package/works"}, timeout=10).json()
        assert sent["status"] == 200
        gql = httpx.post(f"{base}/v0/gql", json={"query": "{ functions { slug } }"}, timeout=10).json()
        assert gql == {"data": {"functions": []}}


def test_wheel_and_sdist_install_and_run(tmp_path: Path) -> None:
    work = checkout_copy(tmp_path / "checkout")
    run(f"{sys.executable} -m build --outdir dist .", work)
    [wheel] = (work / "dist").glob("pyngest-*.whl")
    [sdist] = (work / "dist").glob("pyngest-*.tar.gz")
    data = _data_files(work)
    assert {"pyngest/server/ui/index.html", "pyngest/server/store/sqlite/schema.sql",
            "pyngest/server/api/graphql/schema.graphql"} <= data
    assert data <= set(zipfile.ZipFile(wheel).namelist())
    top = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as tar:
        in_sdist = {n.removeprefix(f"{top}/src/") for n in tar.getnames()}
    assert data <= in_sdist

    venv = tmp_path / "venv"
    run(f"python3 -m venv {venv} && {venv}/bin/pip install {wheel}", tmp_path)
    assert run(f"{venv}/bin/pyngest --version", tmp_path).strip() == "pyngest " + wheel.name.split("-")[1]
    _serves(venv, tmp_path, "from-wheel")
    run(f"{venv}/bin/pip install --force-reinstall --no-deps {sdist}", tmp_path)
    _serves(venv, tmp_path, "from-sdist")
