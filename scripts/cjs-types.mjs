#!/usr/bin/env node
// After the build: the CommonJS entry of the package. dist/index.cjs requires the ES module
// (require(esm), Node >= 20.19), so both kinds of consumer share one instance; and every
// dist/**/*.d.ts gets a .d.cts twin whose relative imports name .cjs, so that TypeScript's
// node16/nodenext resolution sees CommonJS declarations under the "require" condition (TS1479 otherwise).
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'

const dist = path.join(import.meta.dirname, '..', 'dist')
for (const entry of readdirSync(dist, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith('.d.ts')) continue
  const file = path.join(entry.parentPath, entry.name)
  const text = readFileSync(file, 'utf8').replace(/((?:from|import\()\s*['"]\.{1,2}\/[^'"]*?)\.js(['"])/g, '$1.cjs$2')
  writeFileSync(file.replace(/\.d\.ts$/, '.d.cts'), text)
}
writeFileSync(path.join(dist, 'index.cjs'), "'use strict'\nmodule.exports = require('./index.js')\n")
