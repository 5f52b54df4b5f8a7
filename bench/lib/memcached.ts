/**
 * memcached servers for benchmarks: each on a free port of 127.0.0.1, killed when the benchmark
 * exits however it exits (normal end, error, SIGINT/SIGTERM from the runner). Each pid is also
 * printed to stderr so that the runner can kill a leftover if a benchmark dies hard.
 * (The approach of test/helpers/memcached.ts, whose port and raw-command helpers it uses.)
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { freePort, rawCommand } from '../../test/helpers/memcached.js'
import { PID_MARK } from './measure.js'

const HOST = '127.0.0.1'
const BINARY = process.env.MEMCACHED_BIN ?? '/usr/bin/memcached'

const children = new Set<ChildProcess>()
const killAll = () => {
  for (const child of children) child.kill('SIGKILL')
  children.clear()
}
process.once('exit', killAll)
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    killAll()
    process.exit(130)
  })
}
process.once('uncaughtException', (err) => {
  killAll()
  console.error(err)
  process.exit(1)
})

export interface Server {
  readonly port: number
  /** `127.0.0.1:port` */
  readonly address: string
  stats(): Promise<Record<string, number>>
  stop(): Promise<void>
}

async function stats(port: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const line of (await rawCommand(port, 'stats\r\n')).split('\r\n')) {
    const [word, name, value] = line.split(' ')
    if (word === 'STAT' && name !== undefined) out[name] = Number(value)
  }
  return out
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Starts memcached on a free loopback port; resolves once it answers `stats` with its own pid. */
export async function startMemcached(extra: string[] = []): Promise<Server> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const args = ['-l', HOST, '-p', String(port), '-U', '0', '-m', '256', ...extra]
    if (process.getuid?.() === 0) args.push('-u', 'memcache')
    const child = spawn(BINARY, args, { stdio: 'ignore' })
    children.add(child)
    child.once('exit', () => children.delete(child))
    process.stderr.write(`${PID_MARK}${child.pid}\n`)
    const deadline = Date.now() + 5000
    let up = false
    while (Date.now() < deadline && child.exitCode === null) {
      try {
        if ((await stats(port)).pid === child.pid) {
          up = true
          break
        }
      } catch {
        // not listening yet
      }
      await sleep(20)
    }
    if (up) {
      return {
        port,
        address: `${HOST}:${port}`,
        stats: () => stats(port),
        async stop() {
          if (child.exitCode !== null || child.signalCode !== null) return
          const gone = new Promise((r) => child.once('exit', r))
          child.kill('SIGTERM')
          const timer = setTimeout(() => child.kill('SIGKILL'), 2000)
          await gone
          clearTimeout(timer)
        },
      }
    }
    child.kill('SIGKILL')
    if (attempt >= 5) throw new Error(`memcached did not start on ${HOST}:${port}`)
  }
}

/** Commands a server received, from its stats (a multi-key get counts one per key). */
export function commands(s: Record<string, number>): { get: number; store: number; other: number; bytes: number } {
  const n = (k: string) => s[k] ?? 0
  return {
    bytes: n('bytes_written'), // what the server sent back: values travel here
    get: n('cmd_get'),
    store: n('cmd_set'), // set, add, replace, append, prepend and cas
    other: n('cmd_touch') + n('delete_hits') + n('delete_misses') + n('incr_hits') + n('incr_misses') + n('decr_hits') + n('decr_misses'),
  }
}

/** Runs `op` `n` times in sequence and says how many commands of each kind each run sent to each server. */
export async function countPerOp(
  servers: Server[],
  n: number,
  op: (i: number) => Promise<void>,
): Promise<Array<{ get: number; store: number; other: number; bytes: number }>> {
  const before = await Promise.all(servers.map(async (s) => commands(await s.stats())))
  for (let i = 0; i < n; i++) await op(i)
  const after = await Promise.all(servers.map(async (s) => commands(await s.stats())))
  return after.map((a, i) => {
    const b = before[i]!
    return { get: (a.get - b.get) / n, store: (a.store - b.store) / n, other: (a.other - b.other) / n, bytes: (a.bytes - b.bytes) / n }
  })
}
