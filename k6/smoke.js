// Smoke test: a few virtual users for about ten seconds, exercising the probes and one full todo
// lifecycle per iteration (create, list, get, conditional patch, stale patch, delete).
// It checks that the contract holds under light concurrency. It is not a benchmark.
//
//   TOKEN=$(palisade token --tenant demo --sub k6 --scopes todos:read,todos:write) \
//     k6 run -e BASE_URL=http://127.0.0.1:8080 k6/smoke.js
//
// Environment:
//   BASE_URL  server root, default http://127.0.0.1:8080
//   TOKEN     bearer token with todos:read and todos:write (required)
//   VUS       virtual users, default 2
//   DURATION  default 10s
//   PACE      seconds each VU sleeps between iterations, default 1
//
// The pacing keeps one token well inside the default rate limits: the `anonymous` policy allows
// 100 requests/s per client IP (burst 200), and the per-user `write` policy 10/s (burst 20).
// Each iteration sends 6 API requests, 4 of them writes, so VUS=2 with PACE=1 sends about 12
// requests/s and 8 writes/s. Raise VUS only together with PACE, or use several tokens with
// k6/load.js.

import http from 'k6/http';
import { check, fail, group, sleep } from 'k6';

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const TOKEN = __ENV.TOKEN || '';
const PACE = Number(__ENV.PACE || '1');

export const options = {
  vus: Number(__ENV.VUS || '2'),
  duration: __ENV.DURATION || '10s',
  thresholds: {
    // Any unexpected status counts as failed (see the expected statuses below).
    http_req_failed: ['rate<0.01'],
    http_req_duration: ['p(95)<500'],
    checks: ['rate>0.99'],
  },
};

const API = `${BASE_URL}/api/v1`;
const OK_ONLY = http.expectedStatuses({ min: 200, max: 299 });

function headers(extra) {
  return Object.assign(
    { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json', Accept: 'application/json' },
    extra || {},
  );
}

function json(res) {
  try {
    return res.json();
  } catch (_) {
    return null;
  }
}

function isProblem(res, status, type) {
  const body = json(res);
  return (
    res.status === status &&
    String(res.headers['Content-Type'] || '').startsWith('application/problem+json') &&
    body !== null &&
    body.type === type &&
    body.status === status &&
    typeof body.request_id === 'string'
  );
}

export function setup() {
  if (!TOKEN) {
    fail('TOKEN is not set: mint one with `palisade token --tenant demo --sub k6 --scopes todos:read,todos:write`');
  }
  const health = http.get(`${BASE_URL}/health`);
  if (health.status !== 200) {
    fail(`${BASE_URL}/health answered ${health.status}; is the server running?`);
  }
  const me = http.get(`${API}/auth/me`, { headers: headers() });
  if (me.status !== 200) {
    fail(`GET /api/v1/auth/me answered ${me.status} with this TOKEN: ${me.body}`);
  }
}

export default function () {
  group('probes', () => {
    const health = http.get(`${BASE_URL}/health`, { tags: { name: 'GET /health' } });
    check(health, {
      'health is 200 ok': (r) => r.status === 200 && (json(r) || {}).status === 'ok',
      'health has a request id': (r) => Boolean(r.headers['X-Request-Id']),
    });
    const ready = http.get(`${BASE_URL}/ready`, { tags: { name: 'GET /ready' } });
    check(ready, {
      'ready is 200 ready': (r) => r.status === 200 && (json(r) || {}).status === 'ready',
    });
  });

  group('todos', () => {
    const title = `k6 smoke ${__VU}-${__ITER}`;
    const created = http.post(`${API}/todos`, JSON.stringify({ title }), {
      headers: headers({ 'Idempotency-Key': `k6-smoke-${__VU}-${__ITER}-${Date.now()}` }),
      tags: { name: 'POST /api/v1/todos' },
      responseCallback: OK_ONLY,
    });
    const todo = json(created) || {};
    const createdOk = check(created, {
      'create is 201': (r) => r.status === 201,
      'create returns id, title, done=false': () =>
        typeof todo.id === 'string' && todo.title === title && todo.done === false,
      'create sends an ETag': (r) => Boolean(r.headers.Etag),
    });
    if (!createdOk || !todo.id) {
      return;
    }
    const etag = created.headers.Etag;

    const list = http.get(`${API}/todos?limit=10`, {
      headers: headers(),
      tags: { name: 'GET /api/v1/todos' },
    });
    check(list, {
      'list is 200 with items and next_cursor': (r) => {
        const page = json(r);
        return r.status === 200 && page !== null && Array.isArray(page.items) && 'next_cursor' in page;
      },
    });

    const got = http.get(`${API}/todos/${todo.id}`, {
      headers: headers(),
      tags: { name: 'GET /api/v1/todos/{id}' },
    });
    check(got, {
      'get is 200': (r) => r.status === 200 && (json(r) || {}).id === todo.id,
      'get has the same ETag': (r) => r.headers.Etag === etag,
    });

    const patched = http.patch(`${API}/todos/${todo.id}`, JSON.stringify({ done: true }), {
      headers: headers({ 'If-Match': etag }),
      tags: { name: 'PATCH /api/v1/todos/{id}' },
    });
    const newEtag = patched.headers.Etag;
    check(patched, {
      'patch with the current ETag is 200 and done': (r) => r.status === 200 && (json(r) || {}).done === true,
      'patch changes the ETag': () => Boolean(newEtag) && newEtag !== etag,
    });

    // The stale ETag must be refused: 412 is the expected answer here.
    const stale = http.patch(`${API}/todos/${todo.id}`, JSON.stringify({ title: 'lost update' }), {
      headers: headers({ 'If-Match': etag }),
      tags: { name: 'PATCH /api/v1/todos/{id} (stale)' },
      responseCallback: http.expectedStatuses(412),
    });
    check(stale, {
      'patch with a stale ETag is 412 problem+json': (r) => isProblem(r, 412, '/problems/precondition-failed'),
    });

    const deleted = http.del(`${API}/todos/${todo.id}`, null, {
      headers: headers({ 'If-Match': newEtag || '*' }),
      tags: { name: 'DELETE /api/v1/todos/{id}' },
    });
    check(deleted, { 'delete is 204': (r) => r.status === 204 });
  });

  sleep(PACE);
}
