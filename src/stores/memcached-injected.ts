/**
 * An injected client (the `client` and `localClient` options: an npm `memcached` 2.x instance, or
 * anything that calls back like one) as a {@link Pool}. The store gives its calls deadlines, since
 * that client never calls back when a socket dies or a server stalls.
 */
import { SessionError } from '../errors.js'
import type { Item, Pool, Reply } from './memcached-wire.js'

/** A callback of the `memcached` client: `(err, result)`; may be called synchronously, late, or never. */
export type MemcachedCallback = (err: unknown, result?: unknown) => void

/**
 * What the store needs of an injected client. An instance of npm `memcached` 2.x has it all;
 * anything else must call back like it: a miss is `(undefined, undefined)`, `gets` gives
 * `{ [key]: value, cas }`, a refused `add`/`replace` is an error with `notStored: true`, a refused
 * `cas`/`del`/`touch` is `false`. Values must come back as the strings written (flag 0).
 */
export interface MemcachedClient {
  get(key: string, cb: MemcachedCallback): void
  gets(key: string, cb: MemcachedCallback): void
  set(key: string, value: string, lifetime: number, cb: MemcachedCallback): void
  add(key: string, value: string, lifetime: number, cb: MemcachedCallback): void
  replace(key: string, value: string, lifetime: number, cb: MemcachedCallback): void
  cas(key: string, value: string, cas: string, lifetime: number, cb: MemcachedCallback): void
  del(key: string, cb: MemcachedCallback): void
  touch(key: string, lifetime: number, cb: MemcachedCallback): void
  end(): void
}

export const CLIENT_METHODS = ['get', 'gets', 'set', 'add', 'replace', 'cas', 'del', 'touch', 'end'] as const

/** The parts of a `memcached@2.x` instance read here, when they are there. */
interface Internals {
  servers?: unknown
  namespace?: unknown
  HashRing?: { get(key: string): string }
  connections?: Record<string, { pool: { readyState: string; metaData?: { callback?: unknown }[]; destroy(): void }[] }>
}

const NOT_STORED = Symbol('NOT_STORED')

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** An injected client as a {@link Pool}; `close` fails the calls in flight and leaves the client to its owner. */
export function injectedPool(client: MemcachedClient, requestTimeout: number): Pool {
  const { servers: listed, namespace: ns, HashRing: ring, connections } = client as unknown as Internals
  const servers = Array.isArray(listed) && listed.every((s) => typeof s === 'string') ? (listed as string[]) : []
  const namespace = typeof ns === 'string' ? ns : ''
  /** Aborts of the calls in flight, with their deadlines (performance.now() ms), oldest first. */
  const pending = new Map<(error?: SessionError) => void, number>()
  /** Per server: the first call on a cold pool; others wait for it, then share its socket. */
  const warming = new Map<string, Promise<void>>()
  let sweeper: NodeJS.Timeout | undefined
  let closed: SessionError | undefined

  /** One timer for all calls in flight, armed for the oldest deadline (every call has the same timeout). */
  const sweep = () => {
    sweeper = undefined
    const now = performance.now()
    for (const [abort, deadline] of pending) {
      if (deadline > now) {
        sweeper = setTimeout(sweep, deadline - now + 1)
        return
      }
      abort() // its deadline passed
    }
  }

  const serverOf = (key: string): string =>
    servers.length === 1 ? servers[0]! : (ring?.get(namespace + key) ?? (servers.join(', ') || 'the injected client'))

  /** The client's sockets to `server`, which it keys as host:port (an empty list when it cannot tell). */
  const poolOf = (server: string) => connections?.[/:\d+$/.test(server) ? server : `${server}:11211`]?.pool ?? []
  /** True when the client has no open socket to `server` (a cold pool); false when it cannot tell. */
  const isCold = (server: string) => connections !== undefined && !poolOf(server).some((socket) => socket.readyState === 'open')

  /** Runs one client call with a deadline; resolves its result, or NOT_STORED for a refused add/replace. */
  function call(key: string, op: (cb: MemcachedCallback) => void, write = false): Promise<unknown> {
    if (closed) return Promise.reject(closed)
    const server = serverOf(key)
    return new Promise((resolve, reject) => {
      let done = false
      let called = false
      let warmed: (() => void) | undefined
      const settle = () => {
        done = true
        pending.delete(abort)
        if (pending.size === 0) sweeper?.unref()
        warmed?.()
      }
      const cb: MemcachedCallback = (err, result) => {
        if (done) return
        settle()
        const first: unknown = Array.isArray(err) ? err[0] : err
        if ((first as { notStored?: unknown } | undefined)?.notStored === true) resolve(NOT_STORED)
        else if (first)
          reject(
            new SessionError(
              'ERR_STORE_UNAVAILABLE',
              `memcached ${server} failed: ${message(first)}; check that it runs and is reachable`,
              {
                cause: first,
              },
            ),
          )
        else resolve(result)
      }
      const abort = (
        error = new SessionError(
          'ERR_STORE_UNAVAILABLE',
          `no answer from memcached ${server} in ${requestTimeout} ms; check that it runs and is reachable`,
          { outcomeUnknown: write && called }, // a write handed to the client may have reached the server
        ),
      ) => {
        if (done) return
        settle()
        // Replies are matched to requests in order per socket: one that will never come makes the socket useless.
        for (const socket of poolOf(server)) if (socket.metaData?.some((query) => query.callback === cb)) socket.destroy()
        reject(error)
      }
      pending.set(abort, performance.now() + requestTimeout)
      // The timer holds the process while a call is in flight, so that its deadline comes even if the client's sockets do not.
      if (sweeper === undefined) sweeper = setTimeout(sweep, requestTimeout + 1)
      else if (pending.size === 1) sweeper.ref()
      // A burst on a cold pool would open a socket per call and overflow it ("The connection pool
      // is full" refuses the whole server): the first call connects, the others wait for it.
      const start = (): void => {
        if (done) return
        const gate = warming.get(server)
        if (gate !== undefined) return void gate.then(start)
        if (isCold(server)) {
          const warm = new Promise<void>((release) => (warmed = release))
          warming.set(server, warm)
          void warm.then(() => warming.get(server) === warm && warming.delete(server))
        }
        try {
          called = true
          op(cb)
        } catch (err) {
          cb(err)
        }
      }
      start()
    })
  }

  const noMeta = async (key: string): Promise<never> => {
    throw new SessionError(
      'ERR_STORE_UNAVAILABLE',
      `the injected client of memcached ${serverOf(key)} does not speak the meta protocol; check supportsMeta() first`,
    )
  }

  /** The client gives a flag-0 item as its string; flagged items as what it made of them (a number, an object). */
  const item = (value: unknown, cas?: unknown): Item | undefined =>
    value === undefined
      ? undefined
      : typeof value === 'string'
        ? { value, flags: 0, cas: cas === undefined ? undefined : String(cas) }
        : { value: String(value), flags: -1, cas: undefined }

  /**
   * The npm client writes a string with flags 0 and a Buffer with its own flag 4, never Perl's
   * flags (1 Storable, 2 gzip): a value in another form cannot be written through it.
   */
  const textOnly = (key: string, value: string | Buffer, flags: number): string => {
    if (typeof value === 'string' && flags === 0) return value
    throw new SessionError(
      'ERR_STORE_UNAVAILABLE',
      `the injected memcached client cannot write "${key}" as bytes with flags ${flags} (Perl's Storable or gzip form); use the servers option instead of client`,
    )
  }

  /** A stored/not-stored answer; `false` with no error is a SERVER_ERROR, on which the client drops the connection. */
  const stored = (answer: unknown, key: string): Reply => {
    if (answer === true) return 'STORED'
    if (answer === NOT_STORED) return 'NOT_STORED'
    throw new SessionError(
      'ERR_STORE_UNAVAILABLE',
      `memcached ${serverOf(key)} refused to store "${key}" (SERVER_ERROR); check its memory (-m) and item size (-I)`,
    )
  }

  return {
    servers,
    injected: true,
    namespace,
    serverOf,
    get: async (key) => item(await call(key, (cb) => client.get(key, cb))),
    async gets(key) {
      const result = await call(key, (cb) => client.gets(key, cb))
      if (result === undefined) return undefined
      const { [namespace + key]: value, cas } = result as Record<string, unknown>
      return item(value, cas)
    },
    async store(mode, key, value, exptime, flags = 0) {
      const text = textOnly(key, value, flags)
      return stored(await call(key, (cb) => client[mode](key, text, exptime, cb), true), key)
    },
    async cas(key, raw, cas, exptime, flags = 0) {
      const value = textOnly(key, raw, flags)
      if ((await call(key, (cb) => client.cas(key, value, cas, exptime, cb), true)) === true) return 'STORED'
      // The client answers false alike for EXISTS and NOT_FOUND: a get tells which.
      return (await call(key, (cb) => client.get(key, cb))) === undefined ? 'NOT_FOUND' : 'EXISTS'
    },
    delete: async (key) => ((await call(key, (cb) => client.del(key, cb), true)) === true ? 'DELETED' : 'NOT_FOUND'),
    touch: async (key, exptime) => ((await call(key, (cb) => client.touch(key, exptime, cb), true)) === true ? 'TOUCHED' : 'NOT_FOUND'),
    // The npm client speaks only the text protocol: no meta, and the meta calls reject unsent.
    supportsMeta: async () => false,
    metaGet: noMeta,
    metaSet: noMeta,
    metaDelete: noMeta,
    close(error) {
      closed = error
      for (const abort of [...pending.keys()]) abort(error)
      if (sweeper !== undefined) clearTimeout(sweeper)
    },
  }
}
