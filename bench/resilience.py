#!/usr/bin/env python3
"""The resilience suite: attacks on a running palisade, each under load, each with its figures.

Runs the real binary on PostgreSQL and a private Redis (a redis-server this script starts on a
free port and stops again; the machine's own Redis is never touched), and plays:

  redis-restart   Redis stopped and started again under load
  pg-terminate    the server's PostgreSQL backends terminated (pg_terminate_backend) under load
  idle-flood      thousands of idle sockets (nothing, half an HTTP/2 preface, a preface) while
                  /health is probed; they must be closed after server.header_read_timeout
  sigterm-drain   SIGTERM under load: the drain must fail nothing and the process exit 0
  jwks-down       OIDC mode with a local stand-in JWKS server, stopped under load

Each scenario prints the requests made, the failures by status, and the worst latency, then
PASS or FAIL; the exit status is 1 when any failed. Standard library only (plus the psql,
openssl and redis-server executables). Only processes this script started are stopped, by PID.
Usage: see bench/resilience.sh.
"""

import argparse
import base64
import collections
import http.client
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_EMPTY_SETTINGS = bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def get_status(port, path, timeout=2):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", path)
        status = conn.getresponse().status
        conn.close()
        return status
    except OSError:
        return None


class Process:
    """A child process this script started; stopped by its PID only."""

    def __init__(self, args, env=None, log=None, cwd=None):
        self.log = open(log, "ab") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd)

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Load:
    """Worker threads sending `requests` (a list of (method, path, body)) round-robin, each on its
    own keep-alive connection, recording every status (or connection error) and latency."""

    def __init__(self, port, token, requests, workers=8):
        self.port, self.token, self.requests = port, token, requests
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.outcomes = collections.Counter()
        self.retry_after_missing = 0
        self.worst = 0.0
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(workers)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_):
        self.stop()

    def stop(self):
        self.stop_event.set()
        for thread in self.threads:
            thread.join()

    def run(self):
        conn = None
        n = 0
        while not self.stop_event.is_set():
            method, path, body = self.requests[n % len(self.requests)]
            n += 1
            headers = {"Content-Type": "application/json"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            started = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                payload = json.dumps(body(n)).encode() if body else None
                conn.request(method, path, body=payload, headers=headers)
                response = conn.getresponse()
                response.read()
                outcome = response.status
                missing = outcome == 503 and response.getheader("Retry-After") is None
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as error:
                outcome, missing = f"error:{type(error).__name__}", False
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.02)
            elapsed = time.monotonic() - started
            with self.lock:
                self.outcomes[outcome] += 1
                self.retry_after_missing += missing
                self.worst = max(self.worst, elapsed)

    def failures(self):
        return {k: v for k, v in self.outcomes.items() if not (isinstance(k, int) and 200 <= k < 300)}

    def report(self, name):
        total = sum(self.outcomes.values())
        print(f"  {name}: requests {total}, failures {self.failures() or 'none'}, worst latency {self.worst * 1000:.0f} ms")


TODO_LOAD = [
    ("GET", "/api/v1/todos", None),
    ("POST", "/api/v1/todos", lambda n: {"title": f"resilience {n}"}),
]


class Suite:
    def __init__(self, args):
        self.args = args
        self.workdir = tempfile.mkdtemp(prefix="palisade-resilience.")
        self.admin_url = args.admin_url
        self.database = f"palisade_resilience_{uuid.uuid4().hex[:12]}"
        self.redis_port = free_port()
        self.redis = None
        self.results = {}

    # --- dependencies -------------------------------------------------------------------------
    def psql(self, sql, url=None):
        subprocess.run(["psql", url or self.admin_url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True,
                       capture_output=True)

    def database_url(self):
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{self.database}"

    def start_redis(self):
        self.redis = Process(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", self.workdir],
                             log=os.path.join(self.workdir, "redis.log"))
        wait_until(lambda: self.tcp_open(self.redis_port), 10, "redis-server")

    @staticmethod
    def tcp_open(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    # --- the server ---------------------------------------------------------------------------
    def server_env(self, port, extra=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PALISADE_") and k not in
               ("DATABASE_URL", "REDIS_URL", "SENTRY_DSN", "OTEL_EXPORTER_OTLP_ENDPOINT")}
        env.update({
            "PALISADE_ENVIRONMENT": "development",
            "PALISADE_SERVER__ADDR": f"127.0.0.1:{port}",
            "DATABASE_URL": self.database_url(),
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}",
            "PALISADE_RATE_LIMIT__ENABLED": "false",
            "RUST_LOG": "warn",
        })
        env.update(extra or {})
        return env

    def start_server(self, name, extra=None):
        port = free_port()
        env = self.server_env(port, extra)
        server = Process([self.args.bin, "serve"], env=env, log=os.path.join(self.workdir, f"{name}.log"),
                         cwd=self.workdir)
        wait_until(lambda: get_status(port, "/ready") == 200, 60, f"{name}: /ready")
        return server, port, env

    def dev_token(self, env):
        return subprocess.run([self.args.bin, "token", "--tenant", "demo", "--sub", "resilience", "--scopes",
                               "todos:read,todos:write"], env=env, cwd=self.workdir, check=True,
                              capture_output=True, text=True).stdout.strip()

    def verdict(self, name, ok, why=""):
        self.results[name] = ok
        print(f"  {name}: {'PASS' if ok else 'FAIL'}{' — ' + why if why and not ok else ''}")

    # --- scenarios ----------------------------------------------------------------------------
    def redis_restart(self):
        server, port, env = self.start_server("redis-restart")
        try:
            with Load(port, self.dev_token(env), TODO_LOAD) as load:
                time.sleep(2)
                self.redis.stop()
                time.sleep(3)
                self.start_redis()
                time.sleep(3)
            load.report("redis-restart")
            fives = {k: v for k, v in load.failures().items() if not (isinstance(k, int) and k < 500)}
            self.verdict("redis-restart", not fives, f"5xx or connection errors {fives}")
        finally:
            server.stop()

    def pg_terminate(self):
        server, port, env = self.start_server("pg-terminate")
        try:
            token = self.dev_token(env)
            sql = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                   f"WHERE datname = '{self.database}' AND application_name = 'palisade'")
            with Load(port, token, TODO_LOAD) as load:
                time.sleep(1)
                deadline = time.monotonic() + 4
                while time.monotonic() < deadline:
                    self.psql(sql)
                    time.sleep(0.05)
                time.sleep(1)
            load.report("pg-terminate")
            bad = {k: v for k, v in load.failures().items() if k != 503}
            recovered = get_status(port, "/ready") == 200
            ok = not bad and load.retry_after_missing == 0 and recovered
            self.verdict("pg-terminate", ok, f"non-503 failures {bad}, 503 without Retry-After "
                         f"{load.retry_after_missing}, ready again {recovered}")
        finally:
            server.stop()

    def idle_flood(self):
        timeout = 30
        server, port, _ = self.start_server("idle-flood", {"PALISADE_SERVER__HEADER_READ_TIMEOUT": f"{timeout}s"})
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        size = min(self.args.idle_sockets, hard - 200)
        sockets = []
        try:
            opened = time.monotonic()
            for i in range(size):
                s = socket.create_connection(("127.0.0.1", port))
                if i % 3 == 1:
                    s.sendall(H2_PREFACE[:10])
                elif i % 3 == 2:
                    s.sendall(H2_PREFACE + H2_EMPTY_SETTINGS)
                sockets.append(s)
            last_opened = time.monotonic()
            print(f"  idle-flood: opened {size} idle sockets in {last_opened - opened:.1f} s")
            latencies, failures = [], collections.Counter()
            while time.monotonic() - last_opened < 3 and time.monotonic() - opened < timeout - 0.5:
                started = time.monotonic()
                status = get_status(port, "/health")
                latencies.append(time.monotonic() - started)
                if status != 200:
                    failures[status or "error"] += 1
            if not latencies:
                raise RuntimeError("opening the sockets took the whole timeout; lower --idle-sockets")
            latencies.sort()
            p99 = latencies[int((len(latencies) - 1) * 0.99)]
            print(f"  idle-flood: {size} idle sockets; /health requests {len(latencies)}, failures "
                  f"{dict(failures) or 'none'}, p99 {p99 * 1000:.1f} ms, worst latency {latencies[-1] * 1000:.0f} ms")
            still_open = 0
            deadline = last_opened + timeout + 5
            for s in sockets:
                s.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    while s.recv(4096):
                        pass
                except socket.timeout:
                    still_open += 1
                except OSError:
                    pass
            print(f"  idle-flood: sockets still open {timeout + 5} s after the last was opened: {still_open}")
            ok = not failures and p99 < 0.05 and still_open == 0
            self.verdict("idle-flood", ok, f"failures {dict(failures)}, p99 {p99 * 1000:.1f} ms, open {still_open}")
        finally:
            for s in sockets:
                s.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            server.stop()

    def sigterm_drain(self):
        drain = 3
        server, port, env = self.start_server("sigterm-drain", {"PALISADE_SERVER__SHUTDOWN_DRAIN_DELAY": f"{drain}s"})
        with Load(port, self.dev_token(env), TODO_LOAD) as load:
            time.sleep(2)
            server.signal(15)
            # A load balancer stops routing once /ready fails; the drain delay covers that time.
            time.sleep(drain - 0.5)
        load.report("sigterm-drain")
        started = time.monotonic()
        code = server.stop(timeout=30)
        print(f"  sigterm-drain: exit status {code}, {time.monotonic() - started:.1f} s after the load stopped")
        self.verdict("sigterm-drain", not load.failures() and code == 0, f"failures {load.failures()}, exit {code}")

    def jwks_down(self):
        key = os.path.join(self.workdir, "jwks-key.pem")
        subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
        modulus = subprocess.run(["openssl", "rsa", "-in", key, "-noout", "-modulus"], check=True,
                                 capture_output=True, text=True).stdout.strip().split("=", 1)[1]
        b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        jwks = json.dumps({"keys": [{"kty": "RSA", "kid": "resilience", "use": "sig", "alg": "RS256",
                                      "n": b64(bytes.fromhex(modulus)), "e": "AQAB"}]}).encode()

        class Jwks(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(jwks)))
                self.end_headers()
                self.wfile.write(jwks)

            def log_message(self, *_):
                pass

        provider = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
        threading.Thread(target=provider.serve_forever, daemon=True).start()
        issuer = f"http://127.0.0.1:{provider.server_address[1]}"

        def sign(claims, kid="resilience"):
            header = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
            body = b64(json.dumps(claims).encode())
            signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=f"{header}.{body}".encode(),
                                       check=True, capture_output=True).stdout
            return f"{header}.{body}.{b64(signature)}"

        now = int(time.time())
        claims = {"iss": issuer, "aud": "palisade", "sub": "resilience", "tenant_id": "demo", "iat": now,
                  "exp": now + 600, "scope": "todos:read todos:write"}
        server, port, _ = self.start_server("jwks-down", {
            "PALISADE_AUTH__ISSUER": issuer, "PALISADE_AUTH__AUDIENCE": "palisade",
            "PALISADE_AUTH__JWKS_URI": f"{issuer}/jwks", "PALISADE_AUTH__JWKS_REFRESH_INTERVAL": "1s"})
        try:
            unknown = sign(claims, kid="unknown")
            with Load(port, sign(claims), TODO_LOAD) as load, \
                    Load(port, unknown, [("GET", "/api/v1/todos", None)], workers=2) as strangers:
                time.sleep(2)
                provider.shutdown()
                provider.server_close()
                time.sleep(4)
            load.report("jwks-down (known key)")
            strangers.report("jwks-down (unknown kid)")
            stranger_bad = {k: v for k, v in strangers.failures().items() if k != 401}
            ok = not load.failures() and not stranger_bad
            self.verdict("jwks-down", ok, f"known-key failures {load.failures()}, unknown-kid non-401 {stranger_bad}")
        finally:
            server.stop()

    # --- driver -------------------------------------------------------------------------------
    def run(self, scenarios):
        self.psql(f"CREATE DATABASE {self.database}")
        self.start_redis()
        try:
            for name in scenarios:
                print(f"== {name}")
                try:
                    getattr(self, name.replace("-", "_"))()
                except Exception as error:  # a scenario that cannot run is a failure, not a crash
                    self.verdict(name, False, f"{type(error).__name__}: {error}")
        finally:
            if self.redis:
                self.redis.stop()
            self.psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        print("== summary: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in self.results.items()))
        passed = all(self.results.values())
        if passed:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            print(f"server and redis logs kept in {self.workdir}")
        return passed


SCENARIOS = ["redis-restart", "pg-terminate", "idle-flood", "sigterm-drain", "jwks-down"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", required=True, help="the palisade binary")
    parser.add_argument("--admin-url", default=os.environ.get("PALISADE_TEST_DATABASE_URL",
                                                              "postgres://postgres@127.0.0.1:5432/postgres"),
                        help="a PostgreSQL URL that may create and drop databases")
    parser.add_argument("--idle-sockets", type=int, default=2000)
    parser.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default: all)")
    args = parser.parse_args()
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {SCENARIOS}")
    sys.exit(0 if Suite(args).run(args.scenarios or SCENARIOS) else 1)


if __name__ == "__main__":
    main()
