/**
 * The options of the memcached store, checked once at the boundary: TypeErrors that name the option.
 */
import { normalizeServer } from './address.js'
import { CLIENT_METHODS, type MemcachedClient } from './memcached-injected.js'

const OPTION_NAMES = ['servers', 'local', 'localTtl', 'trustLocal', 'requestTimeout', 'maxValueBytes', 'client', 'localClient']
/** memcached reads an exptime over 30 days as a Unix time. */
export const THIRTY_DAYS = 2_592_000

/** Options of `memcachedStore` (./memcached.ts). */
export interface MemcachedStoreOptions {
  /** Principal servers, `host:port` (port 11211 if left out); several form a consistent-hashing pool. Every write goes here. */
  servers?: string[] | string
  /**
   * Local servers, a write-through cache of the principal: writes go to the principal, then here;
   * a read serves the local copy only when the principal says it is still current (one meta `mg`
   * that sends no value), so a session destroyed anywhere is never served. @default []
   */
  local?: string[] | string
  /**
   * Seconds a copy in `local` lives at most. Cut to the key's remaining life when this store wrote
   * or touched it (memcached cannot tell a key's remaining life). @default 60
   */
  localTtl?: number
  /**
   * Serve `local` copies without asking the principal, as Apache::Session::Memorycached does:
   * reads keep working while the principal is down, but a session destroyed or changed through
   * another host stays readable here for up to `localTtl` seconds (this process still reads its
   * own writes). @default false
   */
  trustLocal?: boolean
  /**
   * Milliseconds a call may take before it fails with `ERR_STORE_UNAVAILABLE`; also the connect
   * timeout. A server that let a call time out is then refused for 1 s (calls fail at once). @default 1000
   */
  requestTimeout?: number
  /**
   * Largest value, in bytes as stored: UTF-8 (an injected npm `memcached` client also sends each
   * CR and LF as two bytes). Keep it under the server's item size (`-I`, 1 MiB) minus key and
   * header. @default 1000000
   */
  maxValueBytes?: number
  /**
   * An already-configured principal client instead of `servers` (see {@link MemcachedClient}); the
   * caller ends it. The store gives its calls deadlines, but its other traps stay the caller's
   * (flag-2 items parsed in the socket handler, issue-log timers, `ping`, the 100 s connect retry).
   */
  client?: MemcachedClient
  /** An already-configured local client instead of `local`; the caller ends it. */
  localClient?: MemcachedClient
}

function hostPort(server: unknown, option: string): string {
  const address = normalizeServer(server)
  if (address === undefined) {
    throw new TypeError(
      `tied-session: memcachedStore option \`${option}\` takes "host:port" strings ("[address]:port" for IPv6), got ${JSON.stringify(server)}`,
    )
  }
  return address
}

function serverList(value: unknown, option: string): string[] {
  const list = typeof value === 'string' ? [value] : value
  if (!Array.isArray(list))
    throw new TypeError(`tied-session: memcachedStore option \`${option}\` must be a "host:port" string or an array of them`)
  return list.map((server) => hostPort(server, option))
}

function bool(value: unknown, option: string): boolean {
  if (value !== undefined && typeof value !== 'boolean')
    throw new TypeError(`tied-session: memcachedStore option \`${option}\` must be a boolean`)
  return value === true
}

function positiveInteger(value: unknown, option: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > max) {
    throw new TypeError(`tied-session: memcachedStore option \`${option}\` must be an integer from 1 to ${max}, got ${String(value)}`)
  }
  return value as number
}

function injected(value: unknown, option: string): MemcachedClient {
  const missing = CLIENT_METHODS.filter((m) => typeof (value as Record<string, unknown> | null)?.[m] !== 'function')
  if (missing.length > 0)
    throw new TypeError(`tied-session: memcachedStore option \`${option}\` must be a memcached client; it lacks ${missing.join(', ')}`)
  return value as MemcachedClient
}

/** The options with their defaults, checked; throws a TypeError naming a bad one. */
export function resolveOptions(options: MemcachedStoreOptions) {
  if (typeof options !== 'object' || options === null) throw new TypeError('tied-session: memcachedStore takes an options object')
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.includes(name))
      throw new TypeError(`tied-session: unknown memcachedStore option \`${name}\` (known: ${OPTION_NAMES.join(', ')})`)
  }
  const { servers, local, client, localClient } = options
  if ((servers === undefined) === (client === undefined))
    throw new TypeError('tied-session: memcachedStore needs exactly one of `servers` and `client`')
  if (local !== undefined && localClient !== undefined)
    throw new TypeError('tied-session: memcachedStore takes `local` or `localClient`, not both')
  const principal = servers === undefined ? undefined : serverList(servers, 'servers')
  if (principal?.length === 0) throw new TypeError('tied-session: memcachedStore option `servers` must name at least one server')
  const requestTimeout = options.requestTimeout ?? 1000
  if (typeof requestTimeout !== 'number' || !(requestTimeout > 0 && requestTimeout <= 2 ** 31 - 1)) {
    throw new TypeError(
      `tied-session: memcachedStore option \`requestTimeout\` must be a positive number of milliseconds, got ${String(requestTimeout)}`,
    )
  }
  return {
    servers: principal,
    local: local === undefined ? [] : serverList(local, 'local'),
    localTtl: positiveInteger(options.localTtl, 'localTtl', 60, THIRTY_DAYS),
    trustLocal: bool(options.trustLocal, 'trustLocal'),
    requestTimeout,
    maxValueBytes: positiveInteger(options.maxValueBytes, 'maxValueBytes', 1_000_000),
    client: client === undefined ? undefined : injected(client, 'client'),
    localClient: localClient === undefined ? undefined : injected(localClient, 'localClient'),
  }
}
/** Options as {@link resolveOptions} returns them. */
export type Config = ReturnType<typeof resolveOptions>
