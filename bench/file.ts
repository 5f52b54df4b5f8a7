/**
 * 7 file store: tie + read 3 + write 1 nested + untie cycles/s (an existing session, as a web
 * request that writes its session), and read-only ties, side by side with the memory store and
 * with Perl's Cache::FastMmap doing the same cycle on the same sessions (bench/lib/fastmmap.pl).
 *
 * The file store runs on a tmpfs directory (/dev/shm: sessions in memory, as memcached and
 * FastMmap keep them) and on a disk directory (os.tmpdir(), the default's file system), with
 * 1 process and with 4 processes on one directory (each on its own 16 sessions); the memory store
 * with 4 processes, each its own store, shows how far the machine's cores let 4 processes go. Contestants run
 * in rounds, in an order that rotates, each for a slice. The node processes are
 * bench/lib/file-worker.ts, started once and kept; FastMmap is a perl started per slice.
 */
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { lib } from './lib/tied.js'
import { benchId, sessionText } from './lib/data.js'
import { emit, fmt, verdict } from './lib/measure.js'
import type { Job } from './lib/file-worker.js'

const { fileStore } = lib
const QUICK = process.env.BENCH_QUICK === '1'
const ROUNDS = QUICK ? 1 : 2
const SLICE_MS = QUICK ? 800 : 1500
const PER_PROCESS = 16
const MAX_PROCS = 4
const BENCH = 'file store (tie + write + untie)'

const scratch = mkdtempSync(path.join(os.tmpdir(), 'tied-session-bench-'))
const disk = path.join(scratch, 'sessions')
const tmpfs = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/tied-session-bench-') : ''
const workers = new Set<ChildProcess>()
const cleanup = () => {
  for (const w of workers) w.kill('SIGKILL')
  for (const dir of [scratch, tmpfs]) if (dir) rmSync(dir, { recursive: true, force: true })
}
process.once('exit', cleanup)

const keysOf = (p: number) => Array.from({ length: PER_PROCESS }, (_, i) => benchId(`file${p}`, i))
for (const directory of [disk, tmpfs].filter(Boolean)) {
  const store = fileStore({ directory })
  for (let p = 0; p < MAX_PROCS; p++) {
    for (const [i, key] of keysOf(p).entries()) await store.write(key, sessionText(key, i), { ttl: 86400, mode: 'set' })
  }
  await store.close()
}

// --- the node workers, kept for the whole run ---------------------------------------------------
const workerFile = fileURLToPath(new URL('./lib/file-worker.ts', import.meta.url))
const pool = Array.from({ length: MAX_PROCS }, (_, p) => {
  const w = fork(workerFile, [tmpfs, disk, keysOf(p).join(',')], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  workers.add(w)
  w.once('exit', (code) => {
    workers.delete(w)
    if (code !== 0 && code !== null) console.error(`file worker exited with ${code}`)
  })
  return w
})
await Promise.all(pool.map((w) => new Promise<void>((resolve) => w.once('message', () => resolve()))))

/** Runs `job` on the first `procs` workers at once; their cycles in all and the longest wall time. */
async function onWorkers(procs: number, job: Job): Promise<{ cycles: number; ms: number }> {
  const results = await Promise.all(
    pool.slice(0, procs).map((w) => {
      const answer = new Promise<{ cycles: number; ms: number }>((resolve) =>
        w.once('message', (m) => resolve(m as { cycles: number; ms: number })),
      )
      w.send(job)
      return answer
    }),
  )
  return { cycles: results.reduce((a, r) => a + r.cycles, 0), ms: Math.max(...results.map((r) => r.ms)) }
}

// --- Cache::FastMmap, when perl has it ---------------------------------------------------------
const hasFastMmap = spawnSync('perl', ['-MCache::FastMmap', '-e1']).status === 0
const shareFile = path.join(scratch, 'fastmmap.share')
const sessionsFile = path.join(scratch, 'sessions.tsv')
writeFileSync(
  sessionsFile,
  keysOf(0)
    .map((key, i) => `${key}\t${sessionText(key, i)}\n`)
    .join(''),
)
const perlScript = fileURLToPath(new URL('./lib/fastmmap.pl', import.meta.url))

function fastMmap(mode: 'write' | 'read', ms: number): Promise<{ cycles: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn('perl', [perlScript, shareFile, sessionsFile, mode, String(ms)], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk))
    child.once('close', (code) =>
      code === 0 ? resolve(JSON.parse(out) as { cycles: number; ms: number }) : reject(new Error(`fastmmap.pl exited with ${code}`)),
    )
  })
}

// --- the rounds ---------------------------------------------------------------------------------
interface Contestant {
  name: string
  run: (ms: number) => Promise<{ cycles: number; ms: number }>
}
const contestants: Contestant[] = []
for (const [where, dir] of [
  ['tmpfs', tmpfs],
  ['disk', disk],
] as const) {
  if (!dir) continue
  contestants.push(
    { name: `${where}, 1 process`, run: (ms) => onWorkers(1, { store: where, mode: 'write', ms }) },
    { name: `${where}, ${MAX_PROCS} processes`, run: (ms) => onWorkers(MAX_PROCS, { store: where, mode: 'write', ms }) },
    { name: `${where}, read-only`, run: (ms) => onWorkers(1, { store: where, mode: 'read', ms }) },
  )
}
contestants.push(
  { name: 'memory', run: (ms) => onWorkers(1, { store: 'memory', mode: 'write', ms }) },
  // each process its own memory store: nothing shared, so this is how far the machine lets N processes go
  { name: `memory, ${MAX_PROCS} processes`, run: (ms) => onWorkers(MAX_PROCS, { store: 'memory', mode: 'write', ms }) },
)
if (hasFastMmap) {
  contestants.push(
    { name: 'fastmmap', run: (ms) => fastMmap('write', ms) },
    { name: 'fastmmap, read-only', run: (ms) => fastMmap('read', ms) },
  )
}

const totals = new Map(contestants.map((c) => [c.name, { cycles: 0, ms: 0 }]))
// warm-up, not counted: every worker runs every store's cycle until its code is optimized, since
// workers 2-4 run only the N-process rows and would otherwise still be compiling in them
for (const store of ['tmpfs', 'disk', 'memory'] as const) {
  if (store !== 'tmpfs' || tmpfs) await onWorkers(MAX_PROCS, { store, mode: 'write', ms: QUICK ? 500 : 1500 })
}
for (const c of contestants) await c.run(200)
for (let r = 0; r < ROUNDS; r++) {
  for (let i = 0; i < contestants.length; i++) {
    const c = contestants[(i + r) % contestants.length]!
    const { cycles, ms } = await c.run(SLICE_MS)
    const t = totals.get(c.name)!
    t.cycles += cycles
    t.ms += ms
  }
}
for (const w of pool) w.send('exit')

const rate = (name: string) => {
  const t = totals.get(name)
  return t && t.ms > 0 ? (t.cycles / t.ms) * 1000 : undefined
}
const anchor = rate('fastmmap')
const anchorRead = rate('fastmmap, read-only')
const vsAnchor = (r: number, a: number | undefined) => (a === undefined ? '' : `, ${fmt.x(a / r)} FastMmap's time`)
for (const where of ['tmpfs', 'disk']) {
  const one = rate(`${where}, 1 process`)
  const four = rate(`${where}, ${MAX_PROCS} processes`)
  const read = rate(`${where}, read-only`)
  if (one === undefined || four === undefined || read === undefined) continue
  const dir = where === 'tmpfs' ? '/dev/shm, tmpfs' : `${os.tmpdir()}, disk`
  const within = anchor === undefined || anchor / one <= 5
  emit({
    bench: BENCH,
    name: `file store (${dir}), 1 process`,
    figure: `${fmt.int(one)} cycles/s`,
    ratio: anchor === undefined ? '' : `${fmt.x(anchor / one)} FastMmap's time`,
    target: '>= 10,000/s; <= 5x FastMmap',
    result: verdict(one >= 10_000 && within),
  })
  emit({
    bench: BENCH,
    name: `file store (${dir}), ${MAX_PROCS} processes, one directory`,
    figure: `${fmt.int(four)} cycles/s in all (${fmt.int(four / MAX_PROCS)} each)`,
    ratio: `${fmt.x(four / one)} 1 process`,
    target: '>= 1.5x',
    result: verdict(four / one >= 1.5),
  })
  emit({
    bench: BENCH,
    name: `file store (${dir}), read-only ties (tie + read 3 + untie)`,
    figure: `${fmt.int(read)} ties/s`,
    ratio: anchorRead === undefined ? '' : `${fmt.x(anchorRead / read)} FastMmap's time`,
    target: '>= 30,000/s',
    result: verdict(read >= 30_000),
  })
}
emit({
  bench: BENCH,
  name: 'memory store, 1 process',
  figure: `${fmt.int(rate('memory')!)} cycles/s`,
  ratio: vsAnchor(rate('memory')!, anchor).slice(2),
})
const memoryN = rate(`memory, ${MAX_PROCS} processes`)!
emit({
  bench: BENCH,
  name: `memory store, ${MAX_PROCS} processes, each its own (nothing shared: the most ${os.availableParallelism()} cores give)`,
  figure: `${fmt.int(memoryN)} cycles/s in all (${fmt.int(memoryN / MAX_PROCS)} each)`,
  ratio: `${fmt.x(memoryN / rate('memory')!)} 1 process`,
})
if (anchor !== undefined && anchorRead !== undefined) {
  emit({
    bench: BENCH,
    name: 'Cache::FastMmap (perl), 1 process',
    figure: `${fmt.int(anchor)} get + set cycles/s, ${fmt.int(anchorRead)} gets/s`,
    ratio: 'baseline',
  })
} else {
  emit({
    bench: BENCH,
    name: 'Cache::FastMmap (perl)',
    figure: 'n/a: perl -MCache::FastMmap failed (Debian: apt-get install libcache-fastmmap-perl)',
  })
}
