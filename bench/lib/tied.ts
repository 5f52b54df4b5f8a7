/**
 * The library under test, as users run it: src/ compiled by tsc (what `npm run build` ships;
 * ./build.ts; the runner compiles it afresh before every run).
 *
 * Not src/ through tsx: tsx's esbuild runs with keepNames, which wraps every function
 * expression in `__name(fn, "name")`; that costs time per call and turns each closure into a
 * dictionary-mode object (about 250 bytes more), skewing speed and memory figures.
 *
 * BENCH_LIB=src uses src/ through tsx instead; BENCH_LIB=<file> loads that module (a prototype).
 */
import { existsSync } from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { BUILD_ENTRY, buildLib } from './build.js'

type Lib = typeof import('../../src/index.js')

const which = process.env.BENCH_LIB ?? 'dist'
if (which === 'dist' && !existsSync(BUILD_ENTRY)) buildLib()

/** What the library exports (a missing export is undefined at run time). */
export const lib: Lib =
  which === 'src'
    ? await import('../../src/index.js')
    : ((await import(pathToFileURL(which === 'dist' ? BUILD_ENTRY : path.resolve(which)).href)) as Lib)
