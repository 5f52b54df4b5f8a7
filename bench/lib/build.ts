/**
 * Compiles src/ with the project's tsc into .tmp/bench-build/ (git-ignored), the build the
 * benchmarks measure (see ./tied.ts for why not src/ through tsx). Not node_modules/.cache: git
 * worktrees that share one node_modules through a symbolic link would overwrite each other's
 * build there, and measure another checkout's src/. Packages still resolve, through the
 * checkout's node_modules.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../', import.meta.url))
export const BUILD_DIR = path.join(root, '.tmp', 'bench-build')
/** The compiled src/index.ts. */
export const BUILD_ENTRY = path.join(BUILD_DIR, 'dist', 'index.js')

/** Compiles src/ (type errors do not stop the emit); returns a note about them, '' when clean. */
export function buildLib(): string {
  mkdirSync(BUILD_DIR, { recursive: true })
  writeFileSync(path.join(BUILD_DIR, 'package.json'), '{ "type": "module" }\n')
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  const args = ['-p', path.join(root, 'tsconfig.build.json'), '--outDir', path.join(BUILD_DIR, 'dist')]
  const r = spawnSync(process.execPath, [tsc, ...args, '--declaration', 'false', '--declarationMap', 'false', '--sourceMap', 'false'], {
    encoding: 'utf8',
  })
  if (!existsSync(BUILD_ENTRY)) throw new Error(`tsc did not emit ${BUILD_ENTRY}: ${r.stdout}${r.stderr}`)
  return r.status === 0 ? '' : `tsc reported type errors in src/, emitted anyway: ${(r.stdout.split('\n')[0] ?? '').slice(0, 160)}`
}
