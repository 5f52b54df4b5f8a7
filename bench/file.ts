/**
 * 7 file store: tie + read 3 + write 1 nested + untie (a save) cycles/s, with 1 process and
 * with 4 processes on one directory (each process on its own 16 sessions), in alternating
 * rounds. Each process is bench/lib/file-worker.ts; they start together on a 'go' message.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { lib } from './lib/tied.js'
import { benchId, sessionText } from './lib/data.js'
import { emit, fmt } from './lib/measure.js'

const { fileStore } = lib
const QUICK = process.env.BENCH_QUICK === '1'
const ROUNDS = QUICK ? 1 : 3
const SLICE_MS = QUICK ? 1000 : 2500
const PER_PROCESS = 16
const MAX_PROCS = 4

const directory = mkdtempSync(path.join(os.tmpdir(), 'tied-session-bench-'))
const workers = new Set<ChildProcess>()
const cleanup = () => {
  for (const w of workers) w.kill('SIGKILL')
  rmSync(directory, { recursive: true, force: true })
}
process.once('exit', cleanup)

const store = fileStore({ directory })
const keysOf = (p: number) => Array.from({ length: PER_PROCESS }, (_, i) => benchId(`file${p}`, i))
for (let p = 0; p < MAX_PROCS; p++) {
  for (const [i, key] of keysOf(p).entries()) await store.write(key, sessionText(key, i), { ttl: 86400, mode: 'set' })
}
await store.close()

const workerFile = fileURLToPath(new URL('./lib/file-worker.ts', import.meta.url))

/** Starts `procs` workers, lets them run SLICE_MS together, resolves their cycle counts' sum and the wall ms. */
async function round(procs: number): Promise<{ cycles: number; ms: number }> {
  const started = Array.from({ length: procs }, (_, p) => {
    const w = fork(workerFile, [directory, keysOf(p).join(','), String(SLICE_MS)], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    workers.add(w)
    w.once('exit', () => workers.delete(w))
    return w
  })
  const ready = started.map((w) => new Promise<void>((resolve) => w.once('message', () => resolve())))
  await Promise.all(ready)
  const done = started.map(
    (w) =>
      new Promise<{ cycles: number; ms: number }>((resolve, reject) => {
        w.once('message', (m) => resolve(m as { cycles: number; ms: number }))
        w.once('exit', (code) => code !== 0 && reject(new Error(`file worker exited with ${code}`)))
      }),
  )
  for (const w of started) w.send('go')
  const results = await Promise.all(done)
  return { cycles: results.reduce((a, r) => a + r.cycles, 0), ms: Math.max(...results.map((r) => r.ms)) }
}

const totals = new Map<number, { cycles: number; ms: number }>([
  [1, { cycles: 0, ms: 0 }],
  [MAX_PROCS, { cycles: 0, ms: 0 }],
])
for (let r = 0; r < ROUNDS; r++) {
  for (const procs of r % 2 ? [MAX_PROCS, 1] : [1, MAX_PROCS]) {
    const { cycles, ms } = await round(procs)
    const t = totals.get(procs)!
    t.cycles += cycles
    t.ms += ms
  }
}
const rate = (procs: number) => (totals.get(procs)!.cycles / totals.get(procs)!.ms) * 1000
emit({ bench: 'file store (tie + write + untie)', name: '1 process', figure: `${fmt.int(rate(1))} cycles/s` })
emit({
  bench: 'file store (tie + write + untie)',
  name: `${MAX_PROCS} processes, one directory`,
  figure: `${fmt.int(rate(MAX_PROCS))} cycles/s in all (${fmt.int(rate(MAX_PROCS) / MAX_PROCS)} each)`,
  ratio: `${fmt.x(rate(MAX_PROCS) / rate(1))} 1 process`,
})
