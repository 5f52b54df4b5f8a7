/**
 * `npm run bench`: runs every benchmark, one at a time, each in its own process with a time
 * limit, and prints their rows as one Markdown table. `npm run bench -- cycle proxy` runs some.
 * BENCH_QUICK=1 shortens every benchmark (for trying changes; the figures are rougher).
 *
 * A benchmark prints its rows on stdout (ROW_MARK + JSON) and its progress on stderr; the pids
 * of the memcached servers it starts go to stderr too, so that a benchmark killed at its time
 * limit leaves no server behind.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { PID_MARK, ROW_MARK, type Row } from './lib/measure.js'

interface Bench {
  name: string
  file: string
  args?: string[]
  /** seconds before it is stopped */
  limit: number
  nodeArgs?: string[]
  /**
   * Run on one core, with the memcached servers it starts (they inherit the affinity). For
   * request-by-request latency: on this VM a reply that must wake the other, idle core costs
   * 100-130 µs more, and whether it does changes from run to run (see bench/README.md).
   */
  pin?: boolean
}

const ALL: Bench[] = [
  { name: 'cycle', file: 'cycle.ts', args: ['seq'], limit: 90, pin: true },
  { name: 'cycle', file: 'cycle.ts', args: ['c64'], limit: 90 },
  { name: 'local', file: 'local.ts', limit: 60, pin: true },
  { name: 'proxy', file: 'proxy.ts', limit: 60, pin: true },
  { name: 'memory', file: 'memory.ts', limit: 60, nodeArgs: ['--expose-gc'] },
  { name: 'file', file: 'file.ts', limit: 60 },
  { name: 'principal', file: 'principal.ts', limit: 60, pin: true },
  { name: 'replicas', file: 'replicas.ts', limit: 90 },
  { name: 'web', file: 'web.ts', limit: 120 },
  { name: 'serializers', file: 'serializers.ts', limit: 60, pin: true },
]
const CPU = process.env.BENCH_CPU ?? String(os.cpus().length - 1)
const canPin = spawnSync('taskset', ['-c', CPU, 'true']).status === 0

const wanted = process.argv.slice(2)
const unknown = wanted.filter((w) => !ALL.some((b) => b.name === w))
if (unknown.length > 0) {
  console.error(`unknown benchmark ${unknown.join(', ')}; known: ${ALL.map((b) => b.name).join(', ')}`)
  process.exit(2)
}
const benches = wanted.length > 0 ? ALL.filter((b) => wanted.includes(b.name)) : ALL

function run(bench: Bench): Promise<{ rows: Row[]; failure?: string }> {
  const file = fileURLToPath(new URL(bench.file, import.meta.url))
  const argv = [...(bench.nodeArgs ?? []), '--import', 'tsx', file, ...(bench.args ?? [])]
  const [cmd, args] = bench.pin && canPin ? ['taskset', ['-c', CPU, process.execPath, ...argv]] : [process.execPath, argv]
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  const rows: Row[] = []
  const pids = new Set<number>()
  let out = ''
  let err = ''
  let tail = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk
    const lines = out.split('\n')
    out = lines.pop()!
    for (const line of lines) if (line.startsWith(ROW_MARK)) rows.push(JSON.parse(line.slice(ROW_MARK.length)) as Row)
  })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk
    const lines = err.split('\n')
    err = lines.pop()!
    for (const line of lines) {
      if (line.startsWith(PID_MARK)) pids.add(Number(line.slice(PID_MARK.length)))
      else {
        process.stderr.write(line + '\n')
        tail = (tail + line + '\n').slice(-2000)
      }
    }
  })
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    child.kill('SIGTERM')
    setTimeout(() => child.kill('SIGKILL'), 5000).unref()
  }, bench.limit * 1000)
  return new Promise((resolve) => {
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL') // only if it outlived its benchmark
        } catch {
          // gone, as it should be
        }
      }
      if (code === 0 && !timedOut) resolve({ rows })
      else
        resolve({
          rows,
          failure: timedOut
            ? `stopped after ${bench.limit} s`
            : `exited with ${code ?? signal}: ${tail.trim().split('\n').slice(-3).join(' / ')}`,
        })
    })
  })
}

const version = (cmd: string, args: string[]) => {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' }).trim()
  } catch {
    return '?'
  }
}
const started = Date.now()
const all: Row[] = []
// Compile src/ once for all benchmarks (see bench/lib/tied.ts), unless told to measure another build.
let buildNote = ''
if ((process.env.BENCH_LIB ?? 'dist') === 'dist') {
  const { buildLib } = await import('./lib/build.js')
  process.stderr.write('-- compiling src/ with tsc\n')
  buildNote = buildLib()
  if (buildNote) process.stderr.write(buildNote + '\n')
}
for (const bench of benches) {
  process.stderr.write(`-- ${bench.name} ${(bench.args ?? []).join(' ')}\n`)
  const { rows, failure } = await run(bench)
  all.push(...rows)
  if (failure) all.push({ bench: bench.name, name: 'FAILED', figure: failure })
}

const cell = (s: string | undefined) => (s ?? '').replaceAll('|', '\\|')
const lines = [
  `tied-session benchmarks, ${new Date().toISOString().slice(0, 16)}Z: ${os.cpus().length} cores (${os.cpus()[0]?.model.trim() ?? '?'}), ` +
    `Node ${process.version}, ${version(process.env.MEMCACHED_BIN ?? '/usr/bin/memcached', ['-V'])}, loopback; library: ${process.env.BENCH_LIB ?? 'src compiled by tsc'}; ` +
    `${canPin ? `latency rows on core ${CPU} (taskset)` : 'taskset unavailable: latency rows unpinned'}; ` +
    `${((Date.now() - started) / 1000).toFixed(0)} s${buildNote ? `\n(${buildNote})` : ''}`,
  '',
  '| benchmark | measured | figures | ratio | target | result |',
  '| --- | --- | --- | --- | --- | --- |',
  ...all.map(
    (r) => `| ${cell(r.bench)} | ${cell(r.name)} | ${cell(r.figure)} | ${cell(r.ratio)} | ${cell(r.target)} | ${cell(r.result)} |`,
  ),
]
console.log('\n' + lines.join('\n'))
const missed = all.filter((r) => r.result === 'MISS').length
const failed = all.filter((r) => r.name === 'FAILED').length
console.log(
  `\n${all.filter((r) => r.result === 'PASS').length} targets met, ${missed} missed${failed ? `, ${failed} benchmarks FAILED` : ''}`,
)
process.exitCode = failed ? 1 : 0
