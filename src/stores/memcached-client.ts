/**
 * The npm `memcached` client (2.2.2, pinned) with its traps closed, and what the store reads of
 * it: which server a key goes to, whether a pool is cold.
 */
import type net from 'node:net'
import Memcached from 'memcached'
import type { MemcachedCallback, MemcachedClient } from './memcached.js'

/** After a connection error a server is refused this long: calls fail at once, and a restarted server serves again within it. */
const RETRY_MS = 1000

/** What the hardened client takes from the store's options. */
export interface HardenedOptions {
  requestTimeout: number
  poolSize: number
  maxValueBytes: number
}

/** The parts of a `memcached@2.2.2` client (pinned) that the hardening below reads or replaces. */
export type ClientSocket = net.Socket & { metaData?: { callback?: MemcachedCallback }[]; bufferArray: string[]; serverAddress: string }
export interface Internals {
  servers?: unknown
  namespace?: unknown
  HashRing?: { get(key: string): string }
  issues: Record<string, { failed: boolean }>
  connections?: Record<string, { pool: ClientSocket[] }>
  connect(server: string, cb: (err: unknown, socket: ClientSocket | false) => void): void
  connectionIssue(error: string, socket: Partial<ClientSocket>): void
  rawDataReceived(socket: ClientSocket): void
}

export interface Side {
  client: MemcachedClient
  /** Ends the client, or undefined for an injected one (the caller's to end). */
  shutdown: (() => void) | undefined
  servers: string[]
  namespace: string
  /** Per server: the first call on a cold pool; others wait for it, then share its socket. */
  warming: Map<string, Promise<void>>
}

/**
 * A `memcached` client with its traps closed. It relies on internals of memcached@2.2.2 (pinned;
 * unmaintained since 2016): `connect`, `connectionIssue`, `rawDataReceived`, sockets' `metaData`.
 */
export function hardenedClient(servers: string[], config: HardenedOptions): Side {
  const client = new Memcached(servers, {
    retries: 0, // else a refused connect is retried with backoff for 100 s before anyone hears of it
    timeout: config.requestTimeout, // connect timeout only: the client has no per-command timeout
    idle: 30_000,
    poolSize: config.poolSize,
    retry: RETRY_MS,
    failures: 1e9, // both unused while connectionIssue is ours; `failures` would otherwise lead to `spawn ping`
    keyCompression: false,
    namespace: '',
    maxValue: Math.max(1_048_576, config.maxValueBytes),
  })
  const internals = client as unknown as Internals
  const base = Memcached.prototype as unknown as Internals
  const refusals = new Map<string, NodeJS.Timeout>()
  const watched = new WeakSet<ClientSocket>()
  let closed = false

  // Requests in flight on a socket that closes are never called back by the client: fail them now.
  const failInFlight = (socket: ClientSocket, server: string) => {
    for (const query of socket.metaData?.splice(0) ?? []) query.callback?.(new Error(`connection to ${server} closed`))
  }
  internals.connect = (server, callback) =>
    base.connect.call(client, server, (err, socket) => {
      if (socket && !watched.has(socket)) {
        watched.add(socket)
        socket.once('close', () => failInFlight(socket, server))
        // An idle store never keeps the process alive; a call in flight does, by its deadline timer.
        socket.unref()
        coalesceWrites(socket)
      }
      if (closed && socket) socket.destroy() // a connect that completes after close()
      callback(err, socket)
    })
  // The client's own issue log keeps timers that hold the process for up to 300 s, and after
  // `failures` issues spawns `ping` (a crash where there is none). Ours only refuses the server for RETRY_MS.
  internals.connectionIssue = (_error, socket) => {
    socket.end?.()
    const server = socket.serverAddress
    if (server === undefined || closed || refusals.has(server)) return
    internals.issues[server] = { failed: true }
    const timer = setTimeout(() => {
      refusals.delete(server)
      delete internals.issues[server]
    }, RETRY_MS)
    refusals.set(server, timer.unref())
  }
  internals.rawDataReceived = (socket) => {
    frameValues(socket.bufferArray)
    base.rawDataReceived.call(client, socket)
  }
  const shutdown = () => {
    closed = true
    for (const timer of refusals.values()) clearTimeout(timer)
    for (const manager of Object.values(internals.connections ?? {})) for (const socket of [...manager.pool]) socket.destroy()
    client.end()
  }
  return { client: client as unknown as MemcachedClient, shutdown, servers, namespace: '', warming: new Map() }
}

/**
 * The client writes each command to the socket at once, one system call each (the larger part
 * of a request's CPU time on loopback); corked until the end of the tick, the commands of one
 * tick leave together, as a pipelining client sends them.
 */
function coalesceWrites(socket: net.Socket): void {
  const write = socket.write
  let corked = false
  const uncork = () => {
    corked = false
    socket.uncork()
  }
  socket.write = function (this: net.Socket, ...args: Parameters<net.Socket['write']>) {
    if (!corked) {
      corked = true
      socket.cork()
      process.nextTick(uncork)
    }
    return write.apply(this, args)
  } as net.Socket['write']
}

/**
 * Prepares raw reply lines before the client parses them. memcached frames a value by its byte
 * count, but the client splits replies on CRLF: a value with a raw CRLF (written by another client)
 * is joined back into one line. And the client JSON.parses flag-2 items inside its socket handler,
 * with no try/catch, so another client's bad JSON would crash the process: every flagged item is
 * relabelled flag 8, which the client turns into a number, and the store reports as ERR_CORRUPT.
 */
function frameValues(lines: string[]): void {
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.startsWith('VALUE ')) continue
    const head = lines[i]!.split(' ')
    if (head[0] !== 'VALUE' || head.length < 4) continue
    const bytes = Number(head[3])
    let end = i + 1
    let data = lines[end]
    while (data !== undefined && Buffer.byteLength(data) < bytes && end + 1 < lines.length) data += '\r\n' + lines[++end]
    if (data === undefined || Buffer.byteLength(data) < bytes) return // the rest of the value is still to come
    lines.splice(i + 1, end - i, data)
    if (head[2] !== '0') lines[i] = [head[0], head[1], '8', ...head.slice(3)].join(' ')
    i++ // past the data line
  }
}

export function injectedSide(client: MemcachedClient): Side {
  const { servers, namespace } = client as unknown as Partial<Internals>
  return {
    client,
    shutdown: undefined,
    servers: Array.isArray(servers) && servers.every((s) => typeof s === 'string') ? servers : [],
    namespace: typeof namespace === 'string' ? namespace : '',
    warming: new Map(),
  }
}

/** The server a key goes to, as the client picks it (its hashring for a pool). */
export function serverOf(side: Side, key: string): string {
  if (side.servers.length === 1) return side.servers[0]!
  const ring = (side.client as unknown as Partial<Internals>).HashRing
  return ring?.get(side.namespace + key) ?? (side.servers.join(', ') || 'the injected client')
}

/** True when the client has no open socket to `server` (a cold pool); false when it cannot tell. */
export function isCold(client: MemcachedClient, server: string): boolean {
  const { connections } = client as unknown as Partial<Internals>
  if (connections === undefined) return false
  const pool = connections[/:\d+$/.test(server) ? server : `${server}:11211`]?.pool ?? []
  return !pool.some((socket) => socket.readyState === 'open')
}
