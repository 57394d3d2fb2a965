"""The deployment kit (Dockerfile, .dockerignore, compose.yaml, deploy/): what each file
names exists and works, read the way Docker, compose and systemd read them, and the image
builds where a Docker daemon and the base image are available (skipped, with the reason,
where they are not)."""

from __future__ import annotations

import ast
import configparser
import json
import os
import re
import runpy
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from alembic.script import ScriptDirectory
from live_server import run_server

from portal import create_app
from portal.config import ENVIRONMENT, from_environment

ROOT = Path(__file__).resolve().parent.parent
IN_IMAGE = "/app"  # the Dockerfile's WORKDIR, where `COPY . .` puts the project
BIN = Path(sys.executable).parent


# --- reading the files as their tools do --------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines = [
        line
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            found.append((instruction.upper(), " ".join(args.split())))
    return found


def instruction(name: str) -> list[str]:
    return [args for found, args in dockerfile() if found == name]


def exec_form(name: str) -> list[str]:
    """The last ENTRYPOINT/CMD (the one Docker uses), in JSON exec form."""
    (*_, last) = instruction(name)
    return json.loads(last)


def _ignore_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern (Go's filepath.Match, plus ``**`` for any folders)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` (relative, with /) out of the build context:
    a pattern matches it or a folder above it; the last matching pattern wins, and one
    starting with ``!`` brings the path back."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _ignore_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not negate
    return ignored


def in_project(image_path: str) -> Path:
    assert image_path.startswith(IN_IMAGE + "/"), image_path
    relative = image_path[len(IN_IMAGE) + 1 :]
    assert not dockerignored(relative), f"{relative} is left out of the image by .dockerignore"
    return ROOT / relative


def unit() -> dict[str, dict[str, list[str]]]:
    """deploy/portal.service: section -> key -> every value (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in (ROOT / "deploy" / "portal.service").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def interpolated(value: str, **variables: str) -> str:
    """compose's ${NAME}, ${NAME:-default} and ${NAME:?error}, from ``variables``."""

    def one(match: re.Match) -> str:
        name, _, _ = match.group(1).partition(":")
        return variables[name]

    return re.sub(r"\$\{([^}]+)\}", one, value)


def gunicorn_settings() -> dict:
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


# --- the Dockerfile -----------------------------------------------------------------------


def test_the_image_is_slim_python_and_runs_as_a_user_it_creates():
    assert instruction("FROM") == ["python:3.11-slim"]
    (user,) = instruction("USER")
    assert user not in ("root", "0")
    assert any("useradd" in run and run.rstrip().endswith(user) for run in instruction("RUN"))


def test_the_build_context_holds_what_the_install_needs_and_no_secrets():
    assert instruction("WORKDIR") == [IN_IMAGE] and instruction("COPY") == [". ."]
    # setup.cfg reads README.md; setup.py, pyproject.toml and MANIFEST.in build the package.
    for needed in (
        "setup.cfg",
        "setup.py",
        "pyproject.toml",
        "MANIFEST.in",
        "README.md",
        "babel.cfg",
        "wsgi.py",
        "gunicorn.conf.py",
        "portal/__init__.py",
        "portal/translations/en/LC_MESSAGES/messages.po",
        "migrations/env.py",
        "deploy/docker-entrypoint.sh",
        "deploy/healthcheck.py",
    ):
        assert (ROOT / needed).exists(), needed
        assert not dockerignored(needed), f"{needed} is left out of the image"
    for kept_out in (".env", "deploy/.env", "instance/portal.db", ".venv/bin/python", ".git/HEAD"):
        assert dockerignored(kept_out), f"{kept_out} would be copied into the image"
    assert dockerignored("portal/translations/en/LC_MESSAGES/messages.mo")  # built inside


def test_the_install_step_names_what_exists():
    (install,) = [run for run in instruction("RUN") if "pip install" in run]
    extras = configparser.ConfigParser()
    extras.read(ROOT / "setup.cfg")
    assert "pip install -e '.[redis]'" in install
    assert "redis" in extras["options.extras_require"]
    assert "psycopg[binary]" in extras["options"]["install_requires"]
    # The catalogues an in-place install does not build, compiled where i18n looks.
    assert "pybabel compile --statistics -d portal/translations" in install
    assert list((ROOT / "portal" / "translations").glob("*/LC_MESSAGES/messages.po"))
    # The instance folder belongs to the user the container runs as.
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(instruction("ENV"))))
    (user,) = instruction("USER")
    assert f"install -d -o {user} -g {user} -m 700 {env['PORTAL_INSTANCE_PATH']}" in install


def test_entrypoint_command_and_healthcheck_exist():
    entrypoint = exec_form("ENTRYPOINT")
    script = in_project(entrypoint[0])
    assert script.exists() and os.access(script, os.X_OK)
    assert exec_form("CMD") == ["gunicorn", "wsgi:app"]
    module = ast.parse((ROOT / "wsgi.py").read_text())
    assert any(
        isinstance(node, ast.Assign) and any(t.id == "app" for t in node.targets)
        for node in module.body
    )
    (healthcheck,) = instruction("HEALTHCHECK")
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command[0] == "python" and in_project(command[1]).exists()
    # The port gunicorn binds in the image is the one it exposes and the check asks.
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(instruction("ENV"))))
    assert env["GUNICORN_BIND"] == "0.0.0.0:" + instruction("EXPOSE")[0]
    app = create_app(
        {"TESTING": True, "SECRET_KEY": "k" * 40, "SQLALCHEMY_DATABASE_URI": "sqlite://"}
    )
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert "/healthz" in rules and "/healthz" in (ROOT / "deploy" / "healthcheck.py").read_text()


def test_the_entrypoint_migrates_then_runs_the_command(tmp_path):
    database = tmp_path / "portal.db"
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "SECRET_KEY": "entrypoint-test-secret-key-not-for-production",
        "DATABASE_URL": f"sqlite:///{database}",
        "PORTAL_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    command = [str(ROOT / "deploy" / "docker-entrypoint.sh"), "python", "-c", "print('served')"]
    ran = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == "served"
    with sqlite3.connect(database) as db:
        (version,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version == ScriptDirectory(str(ROOT / "migrations")).get_current_head()
    # MIGRATE_ON_START=no (replicas of one release): the command alone.
    skipped = subprocess.run(
        command,
        cwd=ROOT,
        env=env
        | {"DATABASE_URL": f"sqlite:///{tmp_path / 'untouched.db'}", "MIGRATE_ON_START": "no"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert skipped.stdout.strip() == "served" and not (tmp_path / "untouched.db").exists()


@pytest.mark.server
def test_the_healthcheck_passes_on_a_healthy_portal_and_fails_without_one(tmp_path):
    script = [sys.executable, str(ROOT / "deploy" / "healthcheck.py")]
    with run_server(tmp_path) as server:
        env = os.environ | {"GUNICORN_BIND": f"0.0.0.0:{server.port}"}
        healthy = subprocess.run(script, env=env, capture_output=True, text=True, timeout=30)
    assert healthy.returncode == 0, healthy.stdout
    assert json.loads(healthy.stdout)["status"] == "ok"
    env = os.environ | {"GUNICORN_BIND": f"0.0.0.0:{server.port}"}  # the server is gone
    gone = subprocess.run(script, env=env, capture_output=True, text=True, timeout=30)
    assert gone.returncode == 1


# --- compose.yaml and the env file ----------------------------------------------------------


def test_compose_runs_the_portal_on_postgresql_16_and_redis_7():
    services = compose()["services"]
    assert services["db"]["image"] == "postgres:16" and services["redis"]["image"] == "redis:7"
    portal = services["portal"]
    assert portal["build"] == "." and portal["env_file"] == ".env"
    for name in ("db", "redis"):
        assert portal["depends_on"][name] == {"condition": "service_healthy"}
        assert services[name]["healthcheck"]["test"]
    # Published on this host's loopback only: the proxy in front is the way in.
    assert all(port.startswith("127.0.0.1:") for port in portal["ports"])


def test_compose_settings_parse_and_point_at_its_services():
    services = compose()["services"]
    environment = {
        name: interpolated(str(value), POSTGRES_PASSWORD="pw")
        for name, value in services["portal"]["environment"].items()
    }
    parsed = from_environment(environment)  # raises ConfigError on a bad value
    db = services["db"]["environment"]
    expected = f"postgresql+psycopg://{db['POSTGRES_USER']}:pw@db:5432/{db['POSTGRES_DB']}"
    assert parsed["SQLALCHEMY_DATABASE_URI"].startswith(expected)
    assert parsed["REDIS_URL"].startswith("redis://redis:")
    assert parsed["PORTAL_PROXY_COUNT"] == 1
    # gunicorn takes the forwarded scheme from the proxy, as the portal does.
    assert environment["FORWARDED_ALLOW_IPS"]


def test_the_env_example_names_only_real_settings():
    """Every variable deploy/env.example sets or shows (commented) is one the portal
    reads, or the database password compose.yaml uses."""
    names = re.findall(
        r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / "deploy" / "env.example").read_text(), re.M
    )
    assert {"SECRET_KEY", "PORTAL_ENCRYPTION_KEYS", "PORTAL_HMAC_KEY"} <= set(names)
    assert set(names) - set(ENVIRONMENT) == {"POSTGRES_PASSWORD"}


def test_the_deployment_guide_names_only_real_settings():
    """Every variable docs/deploy.md names is one the portal, gunicorn.conf.py, the
    entrypoint or compose.yaml reads."""
    known = set(ENVIRONMENT) | {"PORTAL_INSTANCE_PATH"}  # the latter read by create_app
    for reader in ("gunicorn.conf.py", "deploy/docker-entrypoint.sh", "compose.yaml"):
        known |= set(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", (ROOT / reader).read_text()))
    named = set(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", (ROOT / "docs/deploy.md").read_text()))
    assert {"PORTAL_HTTPS", "PORTAL_PROXY_COUNT", "PORTAL_ENCRYPTION_KEYS"} <= named
    placeholders = {"NEW_KEY", "OLD_KEY"}  # in the rotation example
    assert named - known == placeholders


# --- the systemd unit ---------------------------------------------------------------------


def test_the_unit_migrates_first_and_runs_gunicorn_unprivileged():
    service = unit()["Service"]
    assert service["User"] != ["root"] and service["EnvironmentFile"]
    folder = service["WorkingDirectory"][0]
    assert service["ExecStartPre"] == [f"{folder}/.venv/bin/flask --app wsgi db upgrade"]
    assert service["ExecStart"] == [f"{folder}/.venv/bin/gunicorn wsgi:app"]
    # Requests in flight get gunicorn's graceful_timeout before systemd kills the rest.
    assert int(service["TimeoutStopSec"][0]) > gunicorn_settings()["graceful_timeout"]


def test_the_unit_can_write_only_the_instance_folder():
    service = unit()["Service"]
    assert service["NoNewPrivileges"] == ["yes"] and service["ProtectSystem"] == ["strict"]
    (instance,) = [
        v.split("=", 1)[1] for v in service["Environment"] if v.startswith("PORTAL_INSTANCE_PATH=")
    ]
    assert service["ReadWritePaths"] == [instance]


def test_systemd_accepts_the_unit(tmp_path):
    """systemd-analyze verify, with the unit pointed at this checkout (it checks that the
    commands exist) instead of /srv/portal."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    folder = unit()["Service"]["WorkingDirectory"][0]
    text = (ROOT / "deploy" / "portal.service").read_text().replace(folder, str(ROOT))
    if not (ROOT / ".venv" / "bin" / "gunicorn").exists():
        text = text.replace(f"{ROOT}/.venv/bin", str(BIN))
    copy = tmp_path / "portal.service"
    copy.write_text(text)
    checked = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr


# --- building the image -------------------------------------------------------------------


def _run(*command: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def _last_line(result: subprocess.CompletedProcess) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}, no output"


def docker_unavailable() -> str | None:
    """Why the image cannot be built here, or None."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker client on PATH"
    info = _run(docker, "info", "--format", "{{.ServerVersion}}", timeout=60)
    if info.returncode != 0:
        return f"the docker client is installed but no Docker daemon answers: {_last_line(info)}"
    (base,) = instruction("FROM")
    if _run(docker, "image", "inspect", base, timeout=60).returncode != 0:
        pulled = _run(docker, "pull", base, timeout=900)
        if pulled.returncode != 0:
            return (
                f"the base image {base} is not present and cannot be pulled: {_last_line(pulled)}"
            )
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_image_builds_and_serves(tmp_path):
    if reason := docker_unavailable():
        pytest.skip(reason)
    tag = f"member-portal-test:{uuid.uuid4().hex[:12]}"
    built = _run("docker", "build", "--tag", tag, str(ROOT), timeout=1800)
    assert built.returncode == 0, (built.stdout + built.stderr)[-4000:]
    container = None
    try:
        inside = _run(
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "python",
            tag,
            "-c",
            "import os; from portal import i18n; print(os.getuid(), i18n.compiled('en'))",
            timeout=120,
        )
        assert inside.returncode == 0, inside.stderr
        uid, compiled = inside.stdout.split()
        assert uid != "0" and compiled == "True"
        # Started as a deployer would (SQLite in the instance folder): migrated, serving,
        # healthy by its own HEALTHCHECK command.
        started = _run(
            "docker",
            "run",
            "--detach",
            "--env",
            "SECRET_KEY=" + "k" * 40,
            "--publish",
            f"127.0.0.1:{free_port()}:8000",
            tag,
            timeout=120,
        )
        assert started.returncode == 0, started.stderr
        container = started.stdout.strip()
        deadline = time.monotonic() + 90
        while True:
            check = _run(
                "docker", "exec", container, "python", "/app/deploy/healthcheck.py", timeout=30
            )
            if check.returncode == 0:
                break
            assert time.monotonic() < deadline, _run("docker", "logs", container, timeout=30).stderr
            time.sleep(1)
        assert json.loads(check.stdout) == {
            "status": "ok",
            "database": "ok",
            "redis": "not configured",
        }
    finally:
        if container:
            _run("docker", "rm", "--force", container, timeout=60)
        _run("docker", "image", "rm", "--force", tag, timeout=120)
