// Bundle src/ into dist/ (index.html + assets/app.js + assets/app.css), which Flask serves.
// dist/ is checked in, so running needs no Node: Node is needed only here, to rebuild it
// (`make dashboard`). The output is byte-for-byte reproducible from the same sources.
//
// dist/SOURCES.sha256 records the sources the bundle was built from, in `sha256sum` form
// (`cd api/dashboard && sha256sum -c dist/SOURCES.sha256`); tests/api/test_dashboard_bundle.py
// recomputes it in Python and fails while the bundle is stale.
import { createHash } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { build } from "esbuild";

const outdir = "dist";

/** The files under `folder`, dotfiles and dot-folders left out. */
async function filesUnder(folder) {
  const files = [];
  for (const entry of await readdir(folder, { withFileTypes: true })) {
    if (entry.name.startsWith(".")) continue;
    const path = `${folder}/${entry.name}`;
    if (entry.isDirectory()) files.push(...(await filesUnder(path)));
    else if (entry.isFile()) files.push(path);
  }
  return files;
}

/** The build's inputs: build.mjs, package.json, package-lock.json and src/. */
async function sources() {
  return ["build.mjs", "package.json", "package-lock.json", ...(await filesUnder("src"))].sort();
}

/** One `sha256sum` line per source, sorted by path (code-point order, as Python sorts). */
async function manifest() {
  const lines = [];
  for (const file of await sources()) {
    const digest = createHash("sha256").update(await readFile(file)).digest("hex");
    lines.push(`${digest}  ${file}\n`);
  }
  return lines.join("");
}

const recorded = await manifest();
await rm(outdir, { recursive: true, force: true });
await mkdir(`${outdir}/assets`, { recursive: true });
await build({
  entryPoints: { app: "src/main.js" },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  outdir: `${outdir}/assets`,
  legalComments: "linked",
  logLevel: "info",
});
await copyFile("src/index.html", `${outdir}/index.html`);
await writeFile(`${outdir}/SOURCES.sha256`, recorded);
