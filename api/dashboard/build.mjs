// Bundle src/ into dist/ (index.html + assets/app.js + assets/app.css), which Flask serves.
// Node is needed only here, at build time; `npm run build` runs it.
import { copyFile, mkdir, rm } from "node:fs/promises";
import { build } from "esbuild";

const outdir = "dist";
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
