#!/usr/bin/env python3
"""Breaking changes between two OpenAPI documents (the committed docs/openapi.json snapshots).

    openapi_breaking.py BASE.json HEAD.json   exit 1 and list them when HEAD breaks BASE's clients
    openapi_breaking.py --self-test SNAPSHOT  mutate SNAPSHOT in each breaking way, expect each caught

Breaking, for a client written against BASE:
  - a path or an operation removed;
  - a response field removed, or no longer always present (required -> optional);
  - a new required request field, or a new required parameter;
  - a request enum narrowed (a value removed) or a response enum widened (a value added);
  - a type changed: a request accepting fewer types, a response returning other types.
Only the documents are read; `$ref`s are followed into #/components/schemas (cycles stop).
Used by `.ci/run validate` (see docs/api-versioning.md, "Changing the contract").
"""

import copy
import json
import sys

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def resolve(doc, schema):
    seen = set()
    while isinstance(schema, dict) and "$ref" in schema:
        ref = schema["$ref"]
        if ref in seen:
            break
        seen.add(ref)
        node = doc
        for part in ref.lstrip("#/").split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        schema = node
    return schema if isinstance(schema, dict) else {}


def types(schema):
    kind = schema.get("type")
    if kind is None:
        return None
    return set(kind) if isinstance(kind, list) else {kind}


class Diff:
    def __init__(self, base, head):
        self.base, self.head = base, head
        self.problems = []
        self.seen = set()

    def add(self, where, what):
        self.problems.append(f"{where}: {what}")

    def schema(self, where, b, h, direction):
        """direction: 'request' (client sends) or 'response' (client receives)."""
        key = (json.dumps(b, sort_keys=True), json.dumps(h, sort_keys=True), direction)
        if key in self.seen:
            return
        self.seen.add(key)
        b, h = resolve(self.base, b), resolve(self.head, h)
        bt, ht = types(b), types(h)
        if bt is not None and ht is not None and bt != ht:
            if direction == "request" and not bt <= ht:
                self.add(where, f"accepts {sorted(ht)} instead of {sorted(bt)}")
            if direction == "response" and not ht <= bt:
                self.add(where, f"returns {sorted(ht)} instead of {sorted(bt)}")
        be, he = b.get("enum"), h.get("enum")
        if be is not None and he is not None:
            if direction == "request" and set(map(str, be)) - set(map(str, he)):
                self.add(where, f"no longer accepts {sorted(set(map(str, be)) - set(map(str, he)))}")
            if direction == "response" and set(map(str, he)) - set(map(str, be)):
                self.add(where, f"may now return {sorted(set(map(str, he)) - set(map(str, be)))}")
        elif be is None and he is not None and direction == "request":
            self.add(where, f"now accepts only {he}")
        bp, hp = b.get("properties", {}), h.get("properties", {})
        breq, hreq = set(b.get("required", [])), set(h.get("required", []))
        if direction == "response":
            for name in bp:
                if name not in hp:
                    self.add(f"{where}.{name}", "response field removed")
                elif name in breq and name not in hreq:
                    self.add(f"{where}.{name}", "response field no longer always present")
        else:
            for name in sorted(hreq - breq):
                self.add(f"{where}.{name}", "new required request field")
            if h.get("additionalProperties") is False:
                for name in bp:
                    if name not in hp:
                        self.add(f"{where}.{name}", "request field removed (now refused)")
        for name in bp.keys() & hp.keys():
            self.schema(f"{where}.{name}", bp[name], hp[name], direction)
        if "items" in b and "items" in h:
            self.schema(f"{where}[]", b["items"], h["items"], direction)

    def operation(self, where, b, h):
        bparams = {(p.get("in"), p.get("name")): p for p in b.get("parameters", [])}
        for p in h.get("parameters", []):
            old = bparams.get((p.get("in"), p.get("name")))
            if old is None:
                if p.get("required"):
                    self.add(where, f"new required {p.get('in')} parameter {p.get('name')}")
                continue
            if p.get("required") and not old.get("required"):
                self.add(where, f"{p.get('in')} parameter {p.get('name')} is now required")
            self.schema(f"{where} {p.get('name')}", old.get("schema", {}), p.get("schema", {}), "request")
        bbody, hbody = b.get("requestBody", {}), h.get("requestBody", {})
        if hbody.get("required") and not bbody.get("required"):
            self.add(where, "request body is now required")
        for media, content in bbody.get("content", {}).items():
            new = hbody.get("content", {}).get(media)
            if new is None:
                self.add(where, f"no longer accepts a {media} body")
            else:
                self.schema(f"{where} body", content.get("schema", {}), new.get("schema", {}), "request")
        for status, response in b.get("responses", {}).items():
            new = h.get("responses", {}).get(status)
            if new is None:
                continue
            for media, content in response.get("content", {}).items():
                if media in new.get("content", {}):
                    new_schema = new["content"][media].get("schema", {})
                    self.schema(f"{where} {status}", content.get("schema", {}), new_schema, "response")

    def run(self):
        for path, item in self.base.get("paths", {}).items():
            new_item = self.head.get("paths", {}).get(path)
            if new_item is None:
                self.add(path, "path removed")
                continue
            for method in METHODS:
                if method not in item:
                    continue
                if method not in new_item:
                    self.add(f"{method.upper()} {path}", "operation removed")
                    continue
                self.operation(f"{method.upper()} {path}", item[method], new_item[method])
        return self.problems


def breaking(base, head):
    return Diff(base, head).run()


def self_test(snapshot):
    doc = json.load(open(snapshot))
    assert breaking(doc, copy.deepcopy(doc)) == [], "an unchanged document must pass"

    def mutated(change):
        head = copy.deepcopy(doc)
        change(head)
        return breaking(doc, head)

    schemas = lambda d: d["components"]["schemas"]  # noqa: E731
    cases = {
        "path removed": lambda d: d["paths"].pop("/api/v1/todos/{id}"),
        "operation removed": lambda d: d["paths"]["/api/v1/todos"].pop("post"),
        "response field removed": lambda d: schemas(d)["Todo"]["properties"].pop("done"),
        "new required request field": lambda d: schemas(d)["NewTodo"]["required"].append("due"),
        "request enum narrowed": lambda d: schemas(d)["Role"]["enum"].remove("admin"),
        "response enum widened": lambda d: schemas(d)["TenantStatus"]["enum"].append("archived"),
        "type changed": lambda d: schemas(d)["Todo"]["properties"]["version"].update(type="string"),
        "new required parameter": lambda d: d["paths"]["/api/v1/todos"]["get"]["parameters"].append(
            {"in": "query", "name": "since", "required": True, "schema": {"type": "string"}}
        ),
    }
    for name, change in cases.items():
        found = mutated(change)
        assert found, f"self-test: '{name}' was not reported"
        print(f"ok: {name} -> {found[0]}")
    added = mutated(lambda d: schemas(d)["Todo"]["properties"].update(note={"type": "string"}))
    assert added == [], f"self-test: an added response field is not breaking, got {added}"
    print("ok: an added response field passes")


def main(argv):
    if len(argv) == 3 and argv[1] == "--self-test":
        self_test(argv[2])
        return 0
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    problems = breaking(json.load(open(argv[1])), json.load(open(argv[2])))
    for problem in problems:
        print(f"BREAKING {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
