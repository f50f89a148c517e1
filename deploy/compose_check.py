#!/usr/bin/env python3
"""Validate the Compose files without Docker.

    python3 deploy/compose_check.py deploy/compose/compose.yml --dev
    python3 deploy/compose_check.py deploy/compose/compose.production.yml \
        --production --env-example deploy/compose/.env.production.example
    python3 deploy/compose_check.py --self-test

Two layers, because `docker compose config` is not available where this runs:

1. Schema: the file is interpolated the way Compose does it (${VAR}, ${VAR:-default},
   ${VAR:?error}, $$ ...; production takes its variables from the .env example, as
   `--env-file` would) and validated against the official compose-spec JSON schema. The schema
   comes from the PyPI package check-jsonschema, which vendors compose-spec.json from the
   compose-spec project; nothing is downloaded at run time.
2. Structure and policy the schema cannot express: every service has an image or a build and a
   healthcheck, depends_on targets exist, are reachable under the same profiles and are healthy
   or one-shot as the condition requires, no dependency cycle, bind-mount sources exist (a `--config.file=` that no
   mounted file provides is reported as a warning), and for
   production: published images only (pinned tag), no source mounts, read-only root with a /tmp
   tmpfs, resource limits, a restart policy, rotated json-file logs, dropped capabilities, and an
   .env example that names every variable the file interpolates plus the settings the server
   requires, with placeholders instead of secret values.

Violations print as `COMPOSE <file>: <where>: <what>`; the exit status is 1 if there is any.
Requires PyYAML, jsonschema and check-jsonschema.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

import yaml

# Settings the server cannot start in production without (see docs/configuration.md).
REQUIRED_SERVER_SETTINGS = [
    "PALISADE_ENVIRONMENT",
    "DATABASE_URL",
    "REDIS_URL",
    "PALISADE_AUTH__ISSUER",
    "PALISADE_AUTH__AUDIENCE",
]
SECRET_NAME = re.compile(r"^(DATABASE_URL|REDIS_URL|SENTRY_DSN|.*(PASSWORD|SECRET|TOKEN|_DSN|API_KEY))$")
PLACEHOLDER = "CHANGE_ME"
VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?+])(?P<arg>(?:[^{}]|\{[^{}]*\})*))?\})"
)
LONG_RUNNING_RESTART = {"always", "unless-stopped", "on-failure"}


class Findings:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"COMPOSE {self.source}: {where}: {message}")

    def warn(self, where: str, message: str) -> None:
        """Reported, not failed: for files other teams provide (observability/ configuration)."""
        print(f"WARNING {self.source}: {where}: {message}", file=sys.stderr)


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a dotenv file; comments and blank lines ignored, quotes stripped."""
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def commented_env_keys(path: Path) -> set[str]:
    """Keys that appear only commented out (`# KEY=value`): documented optional settings."""
    keys = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^#\s*([A-Z][A-Z0-9_]*)=", line.strip())
        if m:
            keys.add(m.group(1))
    return keys


def interpolate(value: object, env: dict[str, str], used: set[str], errors: list[str], where: str = "") -> object:
    """Compose-style interpolation of every string scalar (mapping keys are left alone)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, used, errors, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, used, errors, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("plain") or m.group("braced")
        used.add(name)
        op, arg = m.group("op"), m.group("arg") or ""
        is_set = name in env
        is_nonempty = bool(env.get(name))
        present = is_nonempty if op and op.startswith(":") else is_set
        if op in (":-", "-"):
            return env[name] if present else str(interpolate(arg, env, used, errors, where))
        if op in (":?", "?"):
            if not present:
                errors.append(f"{where}: required variable {name} is not set ({arg or 'no message'})")
                return ""
            return env[name]
        if op in (":+", "+"):
            return str(interpolate(arg, env, used, errors, where)) if present else ""
        if not is_set:
            errors.append(f"{where}: variable {name} is not set and has no default")
        return env.get(name, "")

    return VAR.sub(substitute, value)


def compose_schema() -> dict:
    try:
        text = (resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as err:
        raise SystemExit(f"compose_check: the compose-spec schema ships with `pip install check-jsonschema` ({err})")
    return json.loads(text)


def schema_errors(document: dict) -> list[str]:
    import jsonschema

    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema)
    errors = []
    for err in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in err.absolute_path) or "<root>"
        errors.append(f"{path}: {err.message} (compose-spec schema)")
    return errors


def _list(value: object) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def is_one_shot(service: dict) -> bool:
    return str(service.get("restart", "no")) == "no"


def healthcheck_disabled(service: dict) -> bool:
    hc = service.get("healthcheck") or {}
    return hc.get("disable") is True or _list(hc.get("test"))[:1] == ["NONE"]


def bind_sources(service: dict) -> list[str]:
    sources = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, str):
            src = vol.split(":", 1)[0] if ":" in vol else ""
            if src.startswith((".", "/", "~")):
                sources.append(src)
        elif isinstance(vol, dict) and vol.get("type") == "bind":
            sources.append(str(vol.get("source", "")))
    return sources


def check_mounted_configs(name: str, svc: dict, base_dir: Path, f: Findings) -> None:
    """A `--config.file=/path` argument must name a file that a bind mount provides."""
    mounts = []
    for vol in svc.get("volumes") or []:
        if isinstance(vol, str) and vol.count(":") >= 1 and vol.startswith((".", "/")):
            src, target = vol.split(":")[:2]
            mounts.append((target.rstrip("/"), base_dir / src))
    for arg in _list(svc.get("command")):
        m = re.match(r"^--config(?:\.file)?=(/\S+)$", str(arg))
        if not m:
            continue
        path = m.group(1)
        for target, host in sorted(mounts, key=lambda t: -len(t[0])):
            if path == target or path.startswith(target + "/"):
                host_file = (host / path[len(target):].lstrip("/")).resolve()
                if not host_file.is_file():
                    f.warn(f"services.{name}.command", f"{path} comes from {host_file}, which does not exist (yet)")
                break


def check_structure(doc: dict, base_dir: Path, production: bool, f: Findings) -> None:
    services = doc.get("services") or {}
    if not services:
        f.add("services", "no services")
        return
    # Dependency cycles: Compose refuses to start any service of the project.
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in depends_on(services.get(node) or {}):
            if dep not in services:
                continue
            if state.get(dep) == 1:
                f.add("depends_on", "cycle " + " -> ".join([*trail[trail.index(dep):], dep]))
            elif dep not in state:
                visit(dep, [*trail, dep])
        state[node] = 2

    for name in services:
        if name not in state:
            visit(name, [name])

    for name, svc in services.items():
        where = f"services.{name}"
        svc = svc or {}
        if not svc.get("image") and not svc.get("build"):
            f.add(where, "needs an image or a build")
        if "healthcheck" not in svc:
            f.add(f"{where}.healthcheck", "missing (declare one, or `disable: true` with a reason for one-shot or probe-less images)")
        elif healthcheck_disabled(svc):
            if production and not is_one_shot(svc):
                f.add(f"{where}.healthcheck", "disabled on a long-running production service")
        elif not (svc["healthcheck"] or {}).get("test"):
            f.add(f"{where}.healthcheck.test", "missing")

        for dep, condition in depends_on(svc).items():
            dwhere = f"{where}.depends_on.{dep}"
            target = services.get(dep)
            if target is None:
                f.add(dwhere, "no such service")
                continue
            if condition == "service_healthy" and ("healthcheck" not in target or healthcheck_disabled(target)):
                f.add(dwhere, f"condition service_healthy but {dep} has no healthcheck")
            if condition == "service_completed_successfully" and not is_one_shot(target):
                f.add(dwhere, f"condition service_completed_successfully but {dep} restarts (not a one-shot)")
            svc_profiles, dep_profiles = set(_list(svc.get("profiles"))), set(_list(target.get("profiles")))
            if dep_profiles and not (svc_profiles and svc_profiles <= dep_profiles):
                f.add(dwhere, f"{dep} only runs under profiles {sorted(dep_profiles)}, but {name} runs without them")

        for src in bind_sources(svc):
            path = (base_dir / src).resolve() if not src.startswith("/") else Path(src)
            if production:
                f.add(f"{where}.volumes", f"bind mount of {src}: production runs the published image, no host or source mounts")
            elif not path.exists():
                f.add(f"{where}.volumes", f"bind-mount source {src} does not exist ({path})")

        if not production:
            check_mounted_configs(name, svc, base_dir, f)

        build = svc.get("build")
        if build:
            context = base_dir / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            if not context.is_dir():
                f.add(f"{where}.build.context", f"{context} is not a directory")
            elif not (context / dockerfile).is_file():
                f.add(f"{where}.build.dockerfile", f"{context / dockerfile} does not exist")

        for env_file in _list(svc.get("env_file")):
            path = env_file if isinstance(env_file, str) else (env_file or {}).get("path", "")
            if production:
                if not (base_dir / f"{path}.example").is_file():
                    f.add(f"{where}.env_file", f"{path} has no committed {path}.example next to the compose file")
            elif not (base_dir / path).is_file():
                f.add(f"{where}.env_file", f"{path} does not exist")

        if not production:
            for port in svc.get("ports") or []:
                if isinstance(port, str) and not port.startswith("127.0.0.1:"):
                    f.add(f"{where}.ports", f"{port!r}: development ports are published on 127.0.0.1 only")
            continue

        # production-only rules
        if build:
            f.add(f"{where}.build", "production runs the published image; no build")
        image = str(svc.get("image", ""))
        tag = image.rsplit("/", 1)[-1].split(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        if "@sha256:" not in image and (not tag or tag == "latest"):
            f.add(f"{where}.image", f"{image!r}: pin a release tag (never latest or untagged)")
        if svc.get("read_only") is not True:
            f.add(f"{where}.read_only", "must be true")
        if not any(str(t).split(":", 1)[0] == "/tmp" for t in _list(svc.get("tmpfs"))):
            f.add(f"{where}.tmpfs", "needs a /tmp tmpfs (the root filesystem is read-only)")
        limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        for key in ("cpus", "memory"):
            if key not in limits:
                f.add(f"{where}.deploy.resources.limits.{key}", "missing")
        restart = str(svc.get("restart", "no"))
        if not is_one_shot(svc) and restart not in LONG_RUNNING_RESTART:
            f.add(f"{where}.restart", f"{restart!r}: long-running services need always, unless-stopped or on-failure")
        if is_one_shot(svc) and not svc.get("profiles") and not any(
            depends_on(other).get(name) == "service_completed_successfully" for other in services.values()
        ):
            f.add(where, "one-shot service that `up` starts on its own: put it in a profile or make something depend on it")
        logging = svc.get("logging") or {}
        options = logging.get("options") or {}
        if logging.get("driver") != "json-file" or "max-size" not in options or "max-file" not in options:
            f.add(f"{where}.logging", "needs driver json-file with max-size and max-file (log rotation)")
        if "ALL" not in _list(svc.get("cap_drop")):
            f.add(f"{where}.cap_drop", "must contain ALL")
        if not any(str(o).startswith("no-new-privileges") for o in _list(svc.get("security_opt"))):
            f.add(f"{where}.security_opt", "needs no-new-privileges:true")
        if not svc.get("env_file"):
            f.add(f"{where}.env_file", "production settings come from an env_file (.env.production)")


def check_env_example(example: Path, used: set[str], f: Findings) -> None:
    values = parse_env_file(example)
    documented = set(values) | commented_env_keys(example)
    for name in sorted(used - documented):
        f.add(str(example), f"{name} is interpolated by the compose file but not listed in the example")
    for name in REQUIRED_SERVER_SETTINGS:
        if not values.get(name):
            f.add(str(example), f"{name} is required by the server in production but has no example value")
    for name, value in values.items():
        if SECRET_NAME.match(name) and value and PLACEHOLDER not in value:
            f.add(str(example), f"{name} looks like a real secret; use a {PLACEHOLDER} placeholder")
    # Every variable needs a comment saying what it is: a comment line in the same paragraph
    # (the run of non-blank lines it belongs to), so related variables can share one.
    lines = example.read_text(encoding="utf-8").splitlines()
    assignment = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=")
    for i, line in enumerate(lines):
        m = assignment.match(line.strip())
        if not m:
            continue
        j, documented = i - 1, False
        while j >= 0 and lines[j].strip():
            if lines[j].strip().startswith("#") and not assignment.match(lines[j].strip()):
                documented = True
                break
            j -= 1
        if not documented:
            f.add(str(example), f"line {i + 1}: {m.group(1)} has no comment saying what it is")


def check_file(path: Path, production: bool, env_example: Path | None) -> list[str]:
    f = Findings(str(path))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        f.add("<file>", f"cannot parse: {err}")
        return f.items
    if not isinstance(raw, dict):
        f.add("<file>", "not a mapping")
        return f.items
    env = parse_env_file(env_example) if env_example else {}
    used: set[str] = set()
    errors: list[str] = []
    doc = interpolate(raw, env, used, errors)
    for err in errors:
        f.add("interpolation", err)
    for err in schema_errors(doc):
        f.add("schema", err)
    check_structure(doc, path.parent, production, f)
    if env_example:
        check_env_example(env_example, used, f)
    return f.items


# --- self-test ---------------------------------------------------------------------------------

_BAD_PRODUCTION = """
services:
  app:
    build: .
    image: example/app:latest
    ports: ["8080:8080"]
    volumes: ["./src:/src"]
    depends_on:
      ghost: {condition: service_started}
      db: {condition: service_healthy}
      once: {condition: service_completed_successfully}
    environment:
      SECRET_TOKEN: ${SECRET_TOKEN:?set it}
    restart: "no"
  db:
    image: postgres:16-alpine
    healthcheck: {disable: true}
    restart: always
    profiles: [extra]
  once:
    image: example/once:1.0.0
    restart: always
    bogus_key: 1
    depends_on: [app]
"""

_EXPECTED = [
    "services.app.healthcheck: missing",
    "services.app.depends_on.ghost: no such service",
    "services.app.depends_on.db: condition service_healthy but db has no healthcheck",
    "services.app.depends_on.once: condition service_completed_successfully but once restarts",
    "services.app.depends_on.db: db only runs under profiles",
    "services.app.volumes: bind mount of ./src",
    "services.app.build: production runs the published image",
    "services.app.image: 'example/app:latest': pin a release tag",
    "services.app.read_only: must be true",
    "services.app.tmpfs: needs a /tmp tmpfs",
    "services.app.deploy.resources.limits.cpus: missing",
    "services.app.logging: needs driver json-file",
    "services.app.cap_drop: must contain ALL",
    "services.db.healthcheck: disabled on a long-running production service",
    "services.app: one-shot service that `up` starts on its own",
    "interpolation: services.app.environment.SECRET_TOKEN: required variable SECRET_TOKEN is not set",
    "schema: services.once: ",
    "('bogus_key' was unexpected) (compose-spec schema)",
    "SECRET_TOKEN is interpolated by the compose file but not listed in the example",
    "DATABASE_URL is required by the server in production but has no example value",
    "REDIS_URL looks like a real secret",
    "line 1: REDIS_URL has no comment saying what it is",
    "depends_on: cycle app -> once -> app",
]


def self_test() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        compose = Path(tmp) / "compose.yml"
        compose.write_text(_BAD_PRODUCTION, encoding="utf-8")
        example = Path(tmp) / ".env.example"
        example.write_text("REDIS_URL=redis://:hunter2@redis:6379\n", encoding="utf-8")
        found = check_file(compose, production=True, env_example=example)
    missing = [e for e in _EXPECTED if not any(e in line for line in found)]
    if missing:
        print("compose_check self-test FAILED; expected findings not reported:\n  " + "\n  ".join(missing))
        print("reported:\n  " + "\n  ".join(found))
        return 1
    print(f"compose_check self-test: OK (bad production file yields all {len(_EXPECTED)} expected findings)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", type=Path)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dev", action="store_true", help="development rules (default)")
    mode.add_argument("--production", action="store_true", help="production rules")
    parser.add_argument("--env-example", type=Path, help=".env example used for interpolation and coverage checks")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    if not args.file:
        parser.error("no compose file given")
    if args.production and not args.env_example:
        parser.error("--production needs --env-example")
    findings = check_file(args.file, args.production, args.env_example)
    for line in findings:
        print(line)
    if findings:
        print(f"compose_check: {len(findings)} finding(s) in {args.file}", file=sys.stderr)
        return 1
    kind = "production" if args.production else "development"
    print(f"compose_check: {args.file} ({kind}): compose-spec schema and structure OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
