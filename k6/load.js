// Load test: an open-model workload (requests arrive at a set rate whether or not earlier ones
// finished), ramped up, held, and ramped down. It is a benchmark to run by hand against a
// production-like environment, not a CI gate. See k6/README.md.
//
//   k6 run -e BASE_URL=https://staging.example.com -e TOKENS="$T1,$T2,$T3" -e RATE=50 -e DURATION=5m k6/load.js
//
// Environment:
//   BASE_URL      server root, default http://127.0.0.1:8080
//   TOKEN         one bearer token with todos:read and todos:write, or
//   TOKENS        several, comma-separated; each VU uses one, so per-user rate limits spread
//   RATE          iterations per second at the plateau, default 20
//   DURATION      length of the plateau, default 1m
//   RAMP          ramp-up time, default 30s
//   WRITE_RATIO   share of iterations that create, patch and delete a todo (0..1), default 0.2;
//                 the rest list and get
//   P95, P99      latency thresholds in milliseconds, default 300 and 1000
//   MAX_VUS       ceiling on VUs k6 may allocate to keep up, default RATE*10 (at least 50)
//
// A read iteration sends two requests (list, get) and a write iteration three (create, patch,
// delete), so the request rate is about RATE × (2 + WRITE_RATIO): 44/s with the defaults.
// Requests from one machine share one client IP: the default `anonymous` limit (100 requests/s,
// burst 200) caps a single source. A test meant to measure capacity must raise that limit in the target environment
// (k6/README.md). Otherwise what you measure is the rate limiter.

import http from 'k6/http';
import { check, fail } from 'k6';
import { Counter, Rate } from 'k6/metrics';

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const API = `${BASE_URL}/api/v1`;
const TOKENS = (__ENV.TOKENS || __ENV.TOKEN || '')
  .split(',')
  .map((t) => t.trim())
  .filter((t) => t.length > 0);
const RATE = Number(__ENV.RATE || '20');
const WRITE_RATIO = Number(__ENV.WRITE_RATIO || '0.2');
const P95 = Number(__ENV.P95 || '300');
const P99 = Number(__ENV.P99 || '1000');
const MAX_VUS = Number(__ENV.MAX_VUS || String(Math.max(50, RATE * 10)));

// 429s, counted apart so that a run that hit the rate limiter says so plainly.
const rateLimited = new Counter('rate_limited');
// Server errors, the number that matters most when the service is pushed.
const serverErrors = new Rate('server_errors');

export const options = {
  scenarios: {
    load: {
      executor: 'ramping-arrival-rate',
      startRate: Math.max(1, Math.floor(RATE / 10)),
      timeUnit: '1s',
      preAllocatedVUs: Math.min(MAX_VUS, Math.max(5, RATE * 2)),
      maxVUs: MAX_VUS,
      stages: [
        { target: RATE, duration: __ENV.RAMP || '30s' },
        { target: RATE, duration: __ENV.DURATION || '1m' },
        { target: 0, duration: '10s' },
      ],
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    http_req_duration: [`p(95)<${P95}`, `p(99)<${P99}`],
    server_errors: ['rate<0.001'],
    // The generator could not keep up (not enough VUs or CPU): the numbers are not trustworthy.
    dropped_iterations: ['count<1'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  if (TOKENS.length === 0) {
    fail('set TOKEN or TOKENS: mint with `palisade token --tenant demo --sub k6 --scopes todos:read,todos:write`');
  }
  const health = http.get(`${BASE_URL}/health`);
  if (health.status !== 200) {
    fail(`${BASE_URL}/health answered ${health.status}`);
  }
  // Seed one todo per token so that reads have something to fetch from the first second.
  const seeds = TOKENS.map((token) => {
    const res = http.post(`${API}/todos`, JSON.stringify({ title: 'k6 load seed' }), { headers: headers(token) });
    if (res.status !== 201) {
      fail(`seeding a todo answered ${res.status}: ${res.body}`);
    }
    return res.json().id;
  });
  return { seeds };
}

function headers(token, extra) {
  return Object.assign({ Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, extra || {});
}

function record(res) {
  if (res.status === 429) {
    rateLimited.add(1);
  }
  serverErrors.add(res.status >= 500);
  return res;
}

export default function (data) {
  const index = (__VU - 1) % TOKENS.length;
  const token = TOKENS[index];
  if (Math.random() < WRITE_RATIO) {
    write(token);
  } else {
    read(token, data.seeds[index]);
  }
}

function read(token, seedId) {
  const list = record(
    http.get(`${API}/todos?limit=20`, { headers: headers(token), tags: { name: 'GET /api/v1/todos' } }),
  );
  check(list, { 'list 200': (r) => r.status === 200 });
  const page = list.status === 200 ? list.json() : null;
  const items = page && Array.isArray(page.items) ? page.items : [];
  const id = items.length > 0 ? items[Math.floor(Math.random() * items.length)].id : seedId;
  const got = record(
    http.get(`${API}/todos/${id}`, { headers: headers(token), tags: { name: 'GET /api/v1/todos/{id}' } }),
  );
  // Another iteration may have deleted it in between; 404 is a correct answer then.
  check(got, { 'get 200 or 404': (r) => r.status === 200 || r.status === 404 });
}

function write(token) {
  const created = record(
    http.post(`${API}/todos`, JSON.stringify({ title: `k6 load ${__VU}-${__ITER}` }), {
      headers: headers(token),
      tags: { name: 'POST /api/v1/todos' },
    }),
  );
  if (!check(created, { 'create 201': (r) => r.status === 201 })) {
    return;
  }
  const id = created.json().id;
  const patched = record(
    http.patch(`${API}/todos/${id}`, JSON.stringify({ done: true }), {
      headers: headers(token, { 'If-Match': created.headers.Etag }),
      tags: { name: 'PATCH /api/v1/todos/{id}' },
    }),
  );
  check(patched, { 'patch 200': (r) => r.status === 200 });
  const deleted = record(
    http.del(`${API}/todos/${id}`, null, {
      headers: headers(token, { 'If-Match': patched.headers.Etag || '*' }),
      tags: { name: 'DELETE /api/v1/todos/{id}' },
    }),
  );
  check(deleted, { 'delete 204': (r) => r.status === 204 });
}
