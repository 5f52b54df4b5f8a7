/**
 * Timing and reporting shared by the benchmarks. Contestants are measured side by side: in
 * rounds, each contestant runs for a short slice in turn (the order rotates every round), so
 * that a noisy neighbour slows all of them alike and the ratios hold.
 */

/** A benchmark's result line; the runner (bench/run.ts) prints them as one table. */
export interface Row {
  /** Which benchmark and mode, e.g. `cycle, 64 concurrent`. */
  bench: string
  /** Who or what was measured. */
  name: string
  /** The figures. */
  figure: string
  /** Ratio to the baseline, e.g. `1.08x raw time`; '' when none. */
  ratio?: string
  /** The target, e.g. `<= 1.15`; '' when none. */
  target?: string
  /** PASS, MISS, or '' (no target). */
  result?: 'PASS' | 'MISS' | ''
}

export const ROW_MARK = 'BENCH-ROW '
/** Marks a line on stderr giving the pid of a memcached a benchmark started (the runner kills leftovers). */
export const PID_MARK = 'bench-memcached-pid='

/** Prints a row for the runner (stdout, one JSON line) and, readably, for a person (stderr). */
export function emit(row: Row): void {
  process.stdout.write(ROW_MARK + JSON.stringify(row) + '\n')
  const extra = [row.ratio, row.target && `target ${row.target}`, row.result].filter(Boolean).join('  ')
  process.stderr.write(`  ${row.bench} | ${row.name}: ${row.figure}${extra ? '  ' + extra : ''}\n`)
}

export const verdict = (ok: boolean): 'PASS' | 'MISS' => (ok ? 'PASS' : 'MISS')

export interface Sample {
  ops: number
  /** ms of wall time the ops took */
  ms: number
  /** per-op latencies, µs */
  lat: number[]
}

export interface Summary {
  ops: number
  perSec: number
  /** mean µs per op (wall time / ops, so for N concurrent workers it is N times less than the latency) */
  meanUs: number
  p50: number
  p99: number
}

export function summarize(s: Sample): Summary {
  const sorted = Float64Array.from(s.lat).sort()
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN
  return { ops: s.ops, perSec: (s.ops / s.ms) * 1000, meanUs: (s.ms * 1000) / s.ops, p50: at(0.5), p99: at(0.99) }
}

/** Runs `op` with `concurrency` workers for `ms` milliseconds; worker w passes w to op. */
export async function runFor(ms: number, concurrency: number, op: (worker: number) => Promise<void>): Promise<Sample> {
  const lat: number[] = []
  let ops = 0
  const start = performance.now()
  const end = start + ms
  const worker = async (w: number) => {
    for (;;) {
      const t0 = performance.now()
      if (t0 >= end) return
      await op(w)
      lat.push((performance.now() - t0) * 1000)
      ops++
    }
  }
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)))
  return { ops, ms: performance.now() - start, lat }
}

export interface Contestant {
  name: string
  op: (worker: number) => Promise<void>
}

/**
 * Measures contestants side by side: `rounds` rounds, each running every contestant for
 * `sliceMs` (after one unmeasured warm-up slice each), rotating the order each round.
 */
export async function sideBySide(
  contestants: Contestant[],
  opts: { rounds: number; sliceMs: number; concurrency: number; warmMs?: number },
): Promise<Map<string, Summary>> {
  const samples = new Map<string, Sample>(contestants.map((c) => [c.name, { ops: 0, ms: 0, lat: [] }]))
  for (const c of contestants) await runFor(opts.warmMs ?? 300, opts.concurrency, c.op)
  for (let r = 0; r < opts.rounds; r++) {
    for (let i = 0; i < contestants.length; i++) {
      const c = contestants[(i + r) % contestants.length]!
      const s = await runFor(opts.sliceMs, opts.concurrency, c.op)
      const acc = samples.get(c.name)!
      acc.ops += s.ops
      acc.ms += s.ms
      for (const x of s.lat) acc.lat.push(x)
    }
  }
  return new Map([...samples].map(([k, v]) => [k, summarize(v)]))
}

/**
 * ns per op of `runN` (which runs `n` ops): `n` is grown from `start` until a batch takes about
 * `batchMs`, then the median of `batches` batches; `between` runs after each batch (a yield, so
 * that an autoSave flush runs outside the timing).
 */
export async function medianNsPerOp(
  runN: (n: number) => void,
  o: { start: number; batches: number; batchMs: number; between?: () => Promise<unknown> },
): Promise<number> {
  let n = o.start
  for (;;) {
    const t0 = performance.now()
    runN(n)
    const ms = performance.now() - t0
    if (ms > o.batchMs / 4) {
      n = Math.ceil((n * o.batchMs) / ms)
      break
    }
    n *= 4
  }
  const per: number[] = []
  for (let b = 0; b < o.batches; b++) {
    const t0 = process.hrtime.bigint()
    runN(n)
    per.push(Number(process.hrtime.bigint() - t0) / n)
    await o.between?.()
  }
  return per.sort((a, b) => a - b)[Math.floor(per.length / 2)]!
}

export const fmt = {
  int: (n: number) => Math.round(n).toLocaleString('en-US'),
  us: (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1)) + ' µs',
  ms: (n: number) => (n >= 10 ? n.toFixed(1) : n.toFixed(2)) + ' ms',
  x: (n: number) => n.toFixed(2) + 'x',
  n: (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(2)),
}

/** Keeps values alive so that the JIT cannot drop the reads that produced them. */
export let sink: unknown
export function consume(v: unknown): void {
  sink = v
}
