/**
 * `ping`: the liveness check of every configured server (CGI::Session's memcache driver asks its
 * users to write it by hand): reachable?, version, round-trip latency, items and memory.
 */
import { randomBytes } from 'node:crypto'
import { memcachedStore, type Store } from '../index.js'
import { expectArgs, type Command } from './context.js'
import { CliError, EXIT, errorLine } from './errors.js'
import { memcachedStats } from './memcached-raw.js'
import { humanBytes, type Cell } from './output.js'
import { describeStore, requestTimeout, type OpenStore } from './store.js'

/** What ping found out about one server (or the file store's directory). */
interface Probe {
  role: 'principal' | 'local' | 'file'
  /** `host:port`, or the file store's directory. */
  server: string
  up: boolean
  version: string | null
  /** Milliseconds of a set, a get and a delete, one after the other. */
  latencyMs: number | null
  /** memcached `curr_items`. */
  items: number | null
  /** memcached `bytes` and `limit_maxbytes`. */
  bytes: number | null
  limitMaxbytes: number | null
  error?: string
}

/** `ping`: exit 3 when a server is down. */
export const ping: Command = async (ctx) => {
  expectArgs(ctx, 0, 0, 'no arguments')
  const { config } = ctx
  const probes =
    config.kind === 'file'
      ? [await probeFile(ctx.open(), config.namespace)]
      : await Promise.all([
          ...config.servers.map((server) => probeServer('principal', server, config.namespace, requestTimeout(config))),
          ...config.local.map((server) => probeServer('local', server, config.namespace, requestTimeout(config))),
        ])
  const down = probes.filter((p) => !p.up)
  if (ctx.out.json) {
    if (down.length === 0) ctx.out.print({ servers: probes })
  } else {
    const status = (p: Probe): Cell => (p.up ? { text: 'up', style: 'green' } : { text: `down: ${p.error ?? ''}`, style: 'red' })
    const latency = (p: Probe) => (p.latencyMs === null ? '-' : `${p.latencyMs.toFixed(1)} ms`)
    if (config.kind === 'file') {
      ctx.out.table(
        ['STORE', 'DIRECTORY', 'LATENCY', 'STATUS'],
        probes.map((p) => ['file', p.server, latency(p), status(p)]),
        [2],
      )
    } else {
      const memory = (p: Probe) =>
        p.bytes === null || p.limitMaxbytes === null
          ? '-'
          : `${humanBytes(p.bytes)} / ${humanBytes(p.limitMaxbytes)} (${p.limitMaxbytes > 0 ? Math.round((p.bytes / p.limitMaxbytes) * 100) : 0}%)`
      const rows = probes.map((p) => [
        p.role,
        p.server,
        p.version ?? '-',
        latency(p),
        p.items === null ? '-' : String(p.items),
        memory(p),
        status(p),
      ])
      ctx.out.table(['ROLE', 'SERVER', 'VERSION', 'LATENCY', 'ITEMS', 'MEMORY', 'STATUS'], rows, [3, 4])
    }
  }
  if (down.length === 0) return EXIT.ok
  const what = config.kind === 'file' ? 'the file store is unavailable' : `${down.length} of ${probes.length} servers down`
  const message = `${what}: ${down.map((p) => `${p.server} (${p.error})`).join(', ')}`
  return ctx.out.fail(new CliError(message, EXIT.unavailable), { servers: probes })
}

const pingKey = (namespace: string) => `${namespace}tied-session-ping-${randomBytes(6).toString('hex')}`

/** A set, a get and a delete of a key of its own; resolves the milliseconds they took. */
async function roundTrip(store: Store, key: string): Promise<number> {
  const started = performance.now()
  await store.write(key, 'ping', { ttl: 10, mode: 'set' })
  const read = await store.get(key, { consistent: true })
  await store.delete(key)
  const ms = performance.now() - started
  if (read?.value !== 'ping')
    throw new Error(`wrote "ping" to ${key} and read back ${read === undefined ? 'nothing' : JSON.stringify(read.value)}`)
  return ms
}

const reason = (err: unknown) => errorLine(err).replace(/^tied-session: /, '')

async function probeServer(role: 'principal' | 'local', server: string, namespace: string, timeout: number): Promise<Probe> {
  const probe: Probe = { role, server, up: false, version: null, latencyMs: null, items: null, bytes: null, limitMaxbytes: null }
  try {
    const stats = await memcachedStats(server, timeout)
    probe.version = stats.version ?? null
    const number = (name: string) => (stats[name] === undefined ? null : Number(stats[name]))
    probe.items = number('curr_items')
    probe.bytes = number('bytes')
    probe.limitMaxbytes = number('limit_maxbytes')
  } catch (err) {
    return { ...probe, error: reason(err) }
  }
  // a store on this one server, whatever its role: a local server is checked as itself
  const store = memcachedStore({ servers: [server], requestTimeout: timeout })
  try {
    const key = pingKey(namespace)
    await store.get(key) // opens the connection: the round trip measures commands, not the connect
    probe.latencyMs = await roundTrip(store, key)
    probe.up = true
  } catch (err) {
    probe.error = reason(err)
  } finally {
    await store.close()
  }
  return probe
}

async function probeFile(open: OpenStore, namespace: string): Promise<Probe> {
  const directory = open.kind === 'file' ? open.store.directory : describeStore(open)
  const probe: Probe = {
    role: 'file',
    server: directory,
    up: false,
    version: null,
    latencyMs: null,
    items: null,
    bytes: null,
    limitMaxbytes: null,
  }
  try {
    probe.latencyMs = await roundTrip(open.store, pingKey(namespace))
    probe.up = true
  } catch (err) {
    probe.error = reason(err)
  }
  return probe
}
