// Parse AsyncAPI documents with the AsyncAPI project's own parser and print its diagnostics.
// Usage: node validate.mjs <folder the parser is installed in> <document.json>...
// Exits 1 when any document has an error-severity diagnostic (or cannot be parsed at all).
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";

const [installed, ...files] = process.argv.slice(2);
if (!installed || files.length === 0) {
  console.error("usage: node validate.mjs <parser folder> <document.json>...");
  process.exit(2);
}
// The parser lives in a cache outside the repository, so it is loaded from there by path.
const { Parser, DiagnosticSeverity } = createRequire(join(resolve(installed), "node_modules", "/"))(
  "@asyncapi/parser",
);
const names = Object.fromEntries(Object.entries(DiagnosticSeverity).map(([k, v]) => [v, k]));
const parser = new Parser();
let failed = false;
for (const file of files) {
  const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"), {
    source: resolve(file),
  });
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  failed ||= errors.length > 0 || document === undefined;
  console.log(`${file}: ${errors.length} errors, ${diagnostics.length} diagnostics`);
  for (const d of diagnostics) {
    const where = (d.path ?? []).join("/") || "(document)";
    console.log(`  ${names[d.severity] ?? d.severity} ${d.code} at ${where}: ${d.message}`);
  }
}
process.exit(failed ? 1 : 0);
