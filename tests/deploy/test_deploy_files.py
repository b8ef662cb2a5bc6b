"""Structure of the deployment files: Dockerfiles, docker-compose.yml, .dockerignore and the Helm chart.

No container engine is needed: the files are parsed and cross-checked against the workspace on disk
(the service list comes from `services/`, packages and project names from each service's
pyproject.toml). When a `helm` binary is available the chart is also linted and rendered.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVICES_DIR = ROOT / "services"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"
CHART_DIR = ROOT / "deploy" / "helm" / "ailab"
NON_ROOT_UID = 10001


# ----------------------------------------------------------------------------- workspace on disk


@dataclass(frozen=True)
class ServiceDir:
    name: str  # directory name == compose service name == Helm values key
    path: Path
    project: str  # [project].name, e.g. ailab-agent-registry
    package: str  # import package, e.g. agent_registry
    workspace_deps: tuple[str, ...]  # workspace projects it depends on, e.g. ailab-runtime


def _workspace_members() -> dict[str, Path]:
    """Project name -> directory, for every workspace member matched by the root's member globs."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members: dict[str, Path] = {}
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        for directory in sorted(ROOT.glob(pattern)):
            if (directory / "pyproject.toml").is_file():
                project = tomllib.loads((directory / "pyproject.toml").read_text())["project"]["name"]
                members[project] = directory
    return members


def _package_of(path: Path, pyproject: dict) -> str:
    wheel = pyproject.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {}).get("wheel", {})
    packages = wheel.get("packages") or []
    if packages:
        return Path(packages[0]).name
    candidates = [p.name for p in (path / "src").iterdir() if (p / "__init__.py").is_file()]
    assert len(candidates) == 1, f"cannot tell the package of {path}: {candidates}"
    return candidates[0]


@cache
def service_dirs() -> tuple[ServiceDir, ...]:
    members = _workspace_members()
    found = []
    for path in sorted(p for p in SERVICES_DIR.iterdir() if p.is_dir() and (p / "pyproject.toml").is_file()):
        pyproject = tomllib.loads((path / "pyproject.toml").read_text())
        deps = [
            re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0] for d in pyproject["project"].get("dependencies", [])
        ]
        found.append(
            ServiceDir(
                name=path.name,
                path=path,
                project=pyproject["project"]["name"],
                package=_package_of(path, pyproject),
                workspace_deps=tuple(d for d in deps if d in members),
            )
        )
    return tuple(found)


def _ids(services: tuple[ServiceDir, ...]) -> list[str]:
    return [s.name for s in services]


SERVICES = service_dirs()


def test_workspace_has_services():
    assert SERVICES, "no service directory with a pyproject.toml under services/"
    for svc in SERVICES:
        assert (svc.path / "src" / svc.package / "__main__.py").is_file(), f"{svc.name}: no `python -m` entry"


# ----------------------------------------------------------------------------- docker-compose.yml

_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _interpolate(value):
    """Resolve ${VAR:-default} the way compose does when VAR is unset (what a fresh checkout gets)."""
    if isinstance(value, str):
        return _INTERPOLATION.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    return value


@cache
def compose() -> dict:
    assert COMPOSE_FILE.is_file(), "docker-compose.yml is missing at the repository root"
    return _interpolate(yaml.safe_load(COMPOSE_FILE.read_text()))


def compose_service(name: str) -> dict:
    services = compose()["services"]
    assert name in services, f"services/{name} has no service `{name}` in docker-compose.yml"
    return services[name]


def compose_env(name: str) -> dict[str, str]:
    env = compose_service(name).get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def compose_port(name: str) -> int:
    env = compose_env(name)
    assert "PORT" in env, f"compose service {name} sets no PORT"
    return int(env["PORT"])


def _healthcheck_command(healthcheck: dict) -> str:
    test = healthcheck.get("test")
    assert test, "healthcheck without a test"
    if isinstance(test, str):
        return test
    assert test[0] in ("CMD", "CMD-SHELL"), f"unexpected healthcheck form {test[0]}"
    return " ".join(test[1:])


def _published_ports(service: dict) -> list[tuple[int, int]]:
    """(host, container) pairs of a compose service's `ports`."""
    pairs = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            if entry.get("published") is not None:
                pairs.append((int(entry["published"]), int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].split(":")
        if len(parts) >= 2:
            pairs.append((int(parts[-2]), int(parts[-1])))
    return pairs


@pytest.mark.parametrize("svc", SERVICES, ids=_ids(SERVICES))
def test_compose_builds_every_service_from_its_dockerfile(svc: ServiceDir):
    service = compose_service(svc.name)
    build = service.get("build")
    assert isinstance(build, dict), f"{svc.name}: `build` must be a mapping with context and dockerfile"
    context = (COMPOSE_FILE.parent / build["context"]).resolve()
    assert context == ROOT, f"{svc.name}: build context must be the repository root, got {context}"
    dockerfile = (context / build["dockerfile"]).resolve()
    assert dockerfile == (svc.path / "Dockerfile").resolve(), f"{svc.name}: builds {dockerfile}"
    assert dockerfile.is_file(), f"{dockerfile} does not exist"


@pytest.mark.parametrize("svc", SERVICES, ids=_ids(SERVICES))
def test_compose_service_waits_for_healthy_infrastructure(svc: ServiceDir):
    depends_on = compose_service(svc.name).get("depends_on")
    assert isinstance(depends_on, dict), f"{svc.name}: depends_on must use the long form with conditions"
    for infra in ("kafka", "mongo"):
        assert infra in depends_on, f"{svc.name} does not depend on {infra}"
        assert depends_on[infra].get("condition") == "service_healthy", f"{svc.name}: {infra} must be healthy"
    for dependency in depends_on:
        assert dependency in compose()["services"], f"{svc.name} depends on unknown service {dependency}"


@pytest.mark.parametrize("svc", SERVICES, ids=_ids(SERVICES))
def test_compose_service_has_readiness_healthcheck_on_its_port(svc: ServiceDir):
    healthcheck = compose_service(svc.name).get("healthcheck")
    assert healthcheck and not healthcheck.get("disable"), f"{svc.name} has no healthcheck"
    command = _healthcheck_command(healthcheck)
    port = compose_port(svc.name)
    assert f":{port}/readyz" in command, f"{svc.name}: healthcheck must probe :{port}/readyz: {command}"


@pytest.mark.parametrize("svc", SERVICES, ids=_ids(SERVICES))
def test_compose_service_environment(svc: ServiceDir):
    env = compose_env(svc.name)
    services = compose()["services"]
    assert env.get("HOST") == "0.0.0.0", f"{svc.name}: containers must bind 0.0.0.0"
    kafka_host, _, kafka_port = env["KAFKA_BOOTSTRAP_SERVERS"].partition(":")
    assert kafka_host in services and kafka_port, f"{svc.name}: bad KAFKA_BOOTSTRAP_SERVERS"
    advertised = compose_env("kafka").get("KAFKA_ADVERTISED_LISTENERS", "")
    assert f"//{kafka_host}:{kafka_port}" in advertised, "services must use the address Kafka advertises"
    mongo = urlparse(env["MONGODB_URI"])
    assert mongo.scheme == "mongodb" and mongo.hostname in services, f"{svc.name}: bad MONGODB_URI"
    assert env.get("INTERNAL_TOKEN"), f"{svc.name}: INTERNAL_TOKEN must be set"
    assert env.get("ENVIRONMENT") in ("development", "test", "production")


def test_compose_services_share_one_internal_token():
    tokens = {compose_env(s.name)["INTERNAL_TOKEN"] for s in SERVICES}
    assert len(tokens) == 1, f"the gateway and the services must share INTERNAL_TOKEN, got {tokens}"
    assert "${INTERNAL_TOKEN" in COMPOSE_FILE.read_text(), "INTERNAL_TOKEN must be overridable from the shell"


def test_compose_only_gateway_is_published():
    published = {s.name: _published_ports(compose_service(s.name)) for s in SERVICES}
    assert published.pop("gateway", None) == [(compose_port("gateway"), compose_port("gateway"))]
    assert not any(published.values()), f"only the gateway may publish host ports: {published}"


def test_compose_gateway_reaches_every_other_service():
    env = compose_env("gateway")
    for svc in SERVICES:
        if svc.name == "gateway":
            continue
        var = f"{svc.name.replace('-', '_').upper()}_URL"
        assert env.get(var) == f"http://{svc.name}:{compose_port(svc.name)}", f"gateway {var}={env.get(var)}"
    for var in ("DEMO_ADMIN_PASSWORD", "PLATFORM_ADMIN_PASSWORD"):
        assert env.get(var), f"gateway: {var} needs a development default"


def test_compose_billing_uses_stripe_mock():
    if "billing" not in _ids(SERVICES):
        pytest.skip("no billing service")
    env = compose_env("billing")
    base = urlparse(env["STRIPE_API_BASE"])
    assert base.hostname == "stripe-mock" and base.port == 12111
    assert env["STRIPE_API_KEY"].startswith("sk_test_")
    assert "stripe-mock" in compose_service("billing").get("depends_on", {})


def test_compose_infrastructure():
    services = compose()["services"]
    kafka, mongo = services["kafka"], services["mongo"]
    assert kafka["image"].startswith("apache/kafka:"), kafka["image"]
    assert mongo["image"] == "mongo:7" or mongo["image"].startswith("mongo:7."), mongo["image"]
    assert services["stripe-mock"]["image"].startswith("stripe/stripe-mock")

    env = compose_env("kafka")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}, "single-node KRaft"
    node_id = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{node_id}@kafka:")
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert "kafka-broker-api-versions.sh" in _healthcheck_command(kafka["healthcheck"])

    assert "mongosh" in _healthcheck_command(mongo["healthcheck"])
    volumes = [str(v).split(":")[0] if not isinstance(v, dict) else v["source"] for v in mongo["volumes"]]
    assert any(v in (compose().get("volumes") or {}) for v in volumes), "mongo needs a named volume"


# ----------------------------------------------------------------------------- Dockerfiles


@dataclass
class Stage:
    base: str
    alias: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile (continuations joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continuation are ignored by Docker
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path}: dangling line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            parts = [p for p in args.split() if not p.startswith("--")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), parts[0])
            alias = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=base, alias=alias))
        elif not stages:
            if keyword == "ARG":
                name, _, default = args.partition("=")
                global_args[name] = default
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


def _env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        tokens = shlex.split(args)
        if len(tokens) >= 2 and "=" not in tokens[0]:  # legacy `ENV KEY value`
            env[tokens[0]] = " ".join(tokens[1:])
            continue
        for token in tokens:
            key, _, value = token.partition("=")
            env[key] = value
    return env


def _exec_form(args: str) -> list[str]:
    args = re.sub(r"^(--\w[\w-]*=\S+\s+)+", "", args)
    assert args.startswith("["), f"use the JSON exec form: {args}"
    return json.loads(args)


def _copy_sources(stage: Stage) -> list[str]:
    """Build-context paths copied by a stage (COPY without --from)."""
    sources = []
    for args in stage.all("COPY") + stage.all("ADD"):
        tokens = args.split()
        if any(t.startswith("--from") for t in tokens):
            continue
        paths = [t for t in tokens if not t.startswith("--")]
        sources.extend(p.rstrip("/") or "." for p in paths[:-1])
    return sources


@pytest.mark.parametrize("svc", SERVICES, ids=_ids(SERVICES))
def test_dockerfile_is_multi_stage_on_python_slim(svc: ServiceDir):
    _, stages = parse_dockerfile(svc.path / "Dockerfile")
    assert len(stages) >= 2, f"{svc.name}: Dockerfile must be multi-stage"
    for stage in stages:
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", stage.base), f"{svc.name}: base {stage.base}"
    final = stages[-1]
    copied_from = [args for args in final.all("COPY") if "--from=" in args]
    build_names = {s.alias for s in stages[:-1]} | {str(i) for i in range(len(stages) - 1)}
    assert any(
        re.search(r"--from=(\S+)", a).group(1) in build_names and "/app/.venv" in a for a in copied_from
    ), f"{svc.name}: the final stage must copy /app/.venv from the build stage"


@pytest.mark.parametrize("svc", SERVICES, ids=_ids(SERVICES))
def test_dockerfile_build_stage_installs_the_locked_service(svc: ServiceDir):
    _, stages = parse_dockerfile(svc.path / "Dockerfile")
    build = [s for s in stages[:-1] if any("uv sync" in a for a in s.all("RUN"))]
    assert build, f"{svc.name}: no build stage runs `uv sync`"
    stage = build[0]
    runs = " ".join(stage.all("RUN"))
    assert re.search(r"pip install [^&;]*\buv==\d", runs) or any(
        "astral-sh/uv" in a for a in stage.all("COPY")
    ), f"{svc.name}: install a pinned uv"
    sync = next(a for a in stage.all("RUN") if "uv sync" in a)
    for flag in ("--frozen", "--no-dev", "--no-editable", f"--package {svc.project}"):
        assert flag in sync, f"{svc.name}: `uv sync` lacks {flag}"
    assert _env_of(stage).get("UV_PROJECT_ENVIRONMENT") == "/app/.venv" or "/app/.venv" in sync

    sources = _copy_sources(stage)
    for needed in ("pyproject.toml", "uv.lock"):
        assert needed in sources, f"{svc.name}: build stage does not copy {needed}"
    members = _workspace_members()
    needed_dirs = [svc.path] + [members[d] for d in svc.workspace_deps]
    for directory in needed_dirs:
        rel = directory.relative_to(ROOT).as_posix()
        assert any(rel == s or rel.startswith(s + "/") for s in sources), (
            f"{svc.name}: build stage does not copy {rel} (sources: {sources})"
        )
    other_services = [s.path.relative_to(ROOT).as_posix() for s in SERVICES if s.name != svc.name]
    assert not any(s in ("services", ".") or s in other_services for s in sources), (
        f"{svc.name}: copy only its own service directory, not {sources}"
    )


@pytest.mark.parametrize("svc", SERVICES, ids=_ids(SERVICES))
def test_dockerfile_runtime_stage(svc: ServiceDir):
    _, stages = parse_dockerfile(svc.path / "Dockerfile")
    final = stages[-1]
    port = compose_port(svc.name)

    users = final.all("USER")
    assert users, f"{svc.name}: final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{svc.name}: runs as root"
    if user.isdigit():
        assert int(user) == NON_ROOT_UID, f"{svc.name}: uid {user}"
        assert any(f"--uid {NON_ROOT_UID}" in r or f"-u {NON_ROOT_UID}" in r for r in final.all("RUN")), (
            f"{svc.name}: uid {NON_ROOT_UID} is never created"
        )

    exposed = {int(p.split("/")[0]) for args in final.all("EXPOSE") for p in args.split()}
    assert port in exposed, f"{svc.name}: compose uses port {port}, Dockerfile exposes {exposed}"

    env = _env_of(final)
    assert env.get("HOST") == "0.0.0.0", f"{svc.name}: ENV HOST=0.0.0.0 missing"
    assert env.get("PORT") == str(port), f"{svc.name}: ENV PORT={env.get('PORT')}, compose uses {port}"
    assert env.get("PATH", "").startswith("/app/.venv/bin:"), f"{svc.name}: venv not first on PATH"
    assert env.get("PYTHONUNBUFFERED") == "1"

    cmd = _exec_form(final.all("CMD")[-1])
    assert cmd == ["python", "-m", svc.package, "serve"], f"{svc.name}: CMD {cmd}"

    healthchecks = final.all("HEALTHCHECK")
    assert healthchecks, f"{svc.name}: no HEALTHCHECK"
    probe = _exec_form(re.sub(r"^(--\S+\s+)*CMD\s+", "", healthchecks[-1]))
    assert probe[:2] == ["python", "-c"], f"{svc.name}: healthcheck must use python stdlib: {probe}"
    assert "urllib" in probe[2] and "/healthz" in probe[2], probe[2]
    compile(probe[2], f"{svc.name} HEALTHCHECK", "exec")  # the probe itself is valid Python


# ----------------------------------------------------------------------------- .dockerignore


def _dockerignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        patterns.append((negated, line.lstrip("!").strip("/")))
    return patterns


def _docker_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: Go filepath.Match syntax, `**` = any number of directories."""
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
        elif pattern[i] == "[" and "]" in pattern[i:]:
            end = pattern.index("]", i)
            body = pattern[i + 1 : end]
            out, i = out + "[" + ("^" + body[1:] if body[:1] in ("!", "^") else body) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def _is_ignored(rel: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins; a match on a parent directory excludes the subtree."""
    ignored = False
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for negated, pattern in patterns:
        regex = _docker_pattern(pattern)
        if any(regex.match(p) for p in prefixes):
            ignored = not negated
    return ignored


def test_dockerignore_keeps_local_state_out_and_build_inputs_in():
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing at the repository root (the build context)"
    patterns = _dockerignore_patterns()
    for local in (
        ".venv",
        ".data",
        ".git",
        "__pycache__",
        ".pytest_cache",
        "libs/runtime/.venv",
        "services/gateway/src/gateway/__pycache__",
    ):
        assert _is_ignored(local, patterns), f"{local} is sent to the Docker daemon"
    inputs = {"pyproject.toml", "uv.lock"}
    for svc in SERVICES:
        _, stages = parse_dockerfile(svc.path / "Dockerfile")
        inputs.update(_copy_sources(stages[0]))
        inputs.add(f"{svc.path.relative_to(ROOT).as_posix()}/src/{svc.package}/__main__.py")
    for member in _workspace_members().values():
        rel = member.relative_to(ROOT).as_posix()
        inputs.update({f"{rel}/pyproject.toml", *(f"{rel}/src/{p.name}" for p in (member / "src").iterdir())})
    ignored = sorted(i for i in inputs if _is_ignored(i, patterns))
    assert not ignored, f".dockerignore drops files the image builds need: {ignored}"


# ----------------------------------------------------------------------------- Helm chart


@cache
def helm_values() -> dict:
    return yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def test_chart_metadata_and_templates_exist():
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == CHART_DIR.name
    for template in (
        "_helpers.tpl",
        "deployment.yaml",
        "service.yaml",
        "configmap.yaml",
        "secret.yaml",
        "hpa.yaml",
        "ingress.yaml",
        "NOTES.txt",
    ):
        assert (CHART_DIR / "templates" / template).is_file(), f"templates/{template} is missing"
    assert (CHART_DIR.parent / "README.md").is_file()


def test_helm_values_list_every_service():
    values = helm_values()["services"]
    assert set(values) == set(_ids(SERVICES)), "values.yaml services must match the directories in services/"
    for svc in SERVICES:
        entry = values[svc.name]
        assert entry["port"] == compose_port(svc.name), f"{svc.name}: chart port differs from compose"
        assert entry["image"]["repository"].rsplit("/", 1)[-1] == svc.name
        hpa = entry["hpa"]
        assert {"enabled", "minReplicas", "maxReplicas", "targetCPUUtilizationPercentage"} <= set(hpa)
        assert hpa["minReplicas"] <= hpa["maxReplicas"]


def test_helm_readme_documents_every_value():
    """Every leaf key of values.yaml (services.<name>.* collapsed) appears in the README."""
    readme = (CHART_DIR.parent / "README.md").read_text()

    def leaves(node, prefix=""):
        if isinstance(node, dict) and node:
            for key, value in node.items():
                yield from leaves(value, f"{prefix}{key}.")
        else:
            yield prefix.rstrip(".")

    values = dict(helm_values())
    per_service = values.pop("services")

    def documented(key: str) -> bool:
        parts = key.split(".")
        ancestors = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(f"`{a}`" in readme for a in ancestors):  # the key, or a parent documented as a whole
            return True
        # e.g. `probes.startup.periodSeconds` / `failureThreshold`
        parent, leaf = ".".join(parts[:-1]), parts[-1]
        return bool(parent) and f"`{parent}." in readme and f"`{leaf}`" in readme

    missing = [k for k in leaves(values) if not documented(k)]
    service_keys = {k for entry in per_service.values() for k in leaves(entry)}
    missing += [f"services.<name>.{k}" for k in sorted(service_keys) if not documented(k)]
    assert not missing, f"values not documented in deploy/helm/README.md: {missing}"
    assert "helm install ailab deploy/helm/ailab" in readme


def _find_helm() -> str | None:
    found = shutil.which("helm")
    if found:
        return found
    cached = Path.home() / ".cache" / "ailab" / "bin" / "helm"
    return str(cached) if cached.is_file() and os.access(cached, os.X_OK) else None


HELM = _find_helm()
requires_helm = pytest.mark.skipif(HELM is None, reason="helm not on PATH nor in ~/.cache/ailab/bin")
KUBE_VERSION = "1.30.0"  # helm built with `go install` otherwise assumes 1.20, below the chart's kubeVersion


def helm(*args: str) -> str:
    assert HELM
    result = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def render(*set_args: str) -> list[dict]:
    sets = [a for s in set_args for a in ("--set", s)]
    out = helm("template", "rel", str(CHART_DIR), "--namespace", "ns", "--kube-version", KUBE_VERSION, *sets)
    return [d for d in yaml.safe_load_all(out) if d]


def _by_component(docs: list[dict], kind: str) -> dict[str, dict]:
    return {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in docs
        if d["kind"] == kind and "app.kubernetes.io/component" in d["metadata"].get("labels", {})
    }


@requires_helm
def test_helm_lint():
    helm("lint", "--strict", str(CHART_DIR), "--kube-version", KUBE_VERSION)
    helm(
        "lint",
        "--strict",
        str(CHART_DIR),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "ingress.enabled=true",
        "--set",
        "internalToken.existingSecret=x",
        "--set",
        "mongodb.existingSecret=y",
        "--set",
        "gateway.jwt.existingSecret=z",
    )


@requires_helm
def test_helm_renders_deployment_and_service_per_service():
    docs = render()
    deployments, services = _by_component(docs, "Deployment"), _by_component(docs, "Service")
    assert set(deployments) == set(_ids(SERVICES))
    assert set(services) == set(_ids(SERVICES))
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}

    for svc in SERVICES:
        port = compose_port(svc.name)
        deployment, service = deployments[svc.name], services[svc.name]
        pod = deployment["spec"]["template"]["spec"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert service["spec"]["type"] == "ClusterIP"
        assert service["spec"]["selector"] == selector
        assert [p["port"] for p in service["spec"]["ports"]] == [port]

        (container,) = pod["containers"]
        assert container["command"] == ["python", "-m", svc.package, "serve"]
        assert {"name": "http", "containerPort": port, "protocol": "TCP"} in container["ports"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"

        security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        assert security["runAsNonRoot"] is True and security["runAsUser"] == NON_ROOT_UID
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
        assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])

        refs = container["envFrom"]
        cm_names = [r["configMapRef"]["name"] for r in refs if "configMapRef" in r]
        secret_names = [r["secretRef"]["name"] for r in refs if "secretRef" in r]
        assert cm_names and all(n in configmaps for n in cm_names)
        assert secret_names and all(n in secrets for n in secret_names)
        env = {k: v for n in cm_names for k, v in configmaps[n]["data"].items()}
        assert env["PORT"] == str(port) and env["HOST"] == "0.0.0.0"
        assert "KAFKA_BOOTSTRAP_SERVERS" in env

    gateway_refs = deployments["gateway"]["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    gateway_env = {
        k: v
        for r in gateway_refs
        if "configMapRef" in r
        for k, v in configmaps[r["configMapRef"]["name"]]["data"].items()
    }
    for svc in SERVICES:
        if svc.name != "gateway":
            var = f"{svc.name.replace('-', '_').upper()}_URL"
            assert (
                gateway_env[var]
                == f"http://{services[svc.name]['metadata']['name']}:{compose_port(svc.name)}"
            )


@requires_helm
def test_helm_hpa_ingress_and_existing_secrets():
    sets = [f"services.{s.name}.hpa.enabled=true" for s in SERVICES]
    sets += [
        "ingress.enabled=true",
        "internalToken.existingSecret=my-token",
        "mongodb.existingSecret=my-mongo",
    ]
    docs = render(*sets)
    hpas = _by_component(docs, "HorizontalPodAutoscaler")
    deployments = _by_component(docs, "Deployment")
    assert set(hpas) == set(_ids(SERVICES))
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployments[name]["metadata"]["name"]
        assert "replicas" not in deployments[name]["spec"], "the HPA owns the replica count"
        env = {e["name"]: e for e in deployments[name]["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["INTERNAL_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "my-token"
        assert env["MONGODB_URI"]["valueFrom"]["secretKeyRef"]["name"] == "my-mongo"
    (ingress,) = [d for d in docs if d["kind"] == "Ingress"]
    backends = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    gateway_service = _by_component(docs, "Service")["gateway"]["metadata"]["name"]
    assert backends == {gateway_service}


@requires_helm
def test_helm_generated_jwt_key_is_what_the_gateway_loads():
    """The chart-generated signing key must be an EC P-256 key (the gateway signs ES256)."""
    if "gateway" not in _ids(SERVICES):
        pytest.skip("no gateway service")
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    ec = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")
    docs = render()
    (jwt_secret,) = [d for d in docs if d["kind"] == "Secret" and "private.pem" in d.get("data", {})]
    pem = base64.b64decode(jwt_secret["data"]["private.pem"])
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    pod = _by_component(docs, "Deployment")["gateway"]["spec"]["template"]["spec"]
    name = jwt_secret["metadata"]["name"]
    mounted = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == name]
    assert mounted, "the gateway does not mount its signing key"
