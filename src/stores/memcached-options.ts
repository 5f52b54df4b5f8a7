/**
 * The options of the memcached store, checked once at the boundary: TypeErrors that name the option.
 */
import { normalizeServer } from './address.js'
import type { WeightedServer } from './memcached-crc32.js'
import { CLIENT_METHODS, type MemcachedClient } from './memcached-injected.js'

/** Every option memcachedStore takes; all but `client` and `localClient` are tie options too (options.ts). */
export const OPTION_NAMES = [
  'servers',
  'local',
  'distribution',
  'localTtl',
  'trustLocal',
  'requestTimeout',
  'maxValueBytes',
  'replicas',
  'client',
  'localClient',
  'protocol',
]
/** memcached reads an exptime over 30 days as a Unix time. */
export const THIRTY_DAYS = 2_592_000

/** Options of `memcachedStore` (./memcached.ts). */
export interface MemcachedStoreOptions {
  /**
   * Principal servers, `host:port` (port 11211 if left out); several form a pool (see
   * `distribution`). With `distribution: 'crc32'` an entry may be `[host:port, weight]`, as in
   * Cache::Memcached. Every write goes here.
   */
  servers?: Array<string | [string, number]> | string
  /**
   * Local servers, a write-through cache of the principal: writes go to the principal, then here;
   * a read serves the local copy only when the principal says it is still current (one meta `mg`
   * that sends no value), so a session destroyed anywhere is never served. @default []
   */
  local?: Array<string | [string, number]> | string
  /**
   * How a key picks its server in a pool: `'ketama'` (the npm `memcached` client's consistent
   * hashing) or `'crc32'` (Perl's Cache::Memcached: `crc32` buckets, weights, and its rehash while
   * a server is down), for a pool shared with Perl (Apache::Session::Memorycached, Lemonldap::NG).
   * @default 'ketama'
   */
  distribution?: 'ketama' | 'crc32'
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
   * How many more servers of the pool hold a copy of each key (the next distinct ones on the
   * ring), so that a server that dies or restarts empty logs no one out; 0 = one copy. Needs meta
   * commands (memcached >= 1.6) on every server; not with `local`, `client` or a single server.
   * See the README's "High availability". @default 0
   */
  replicas?: number
  /**
   * An already-configured principal client instead of `servers` (see {@link MemcachedClient}); the
   * caller ends it. The store gives its calls deadlines, but its other traps stay the caller's
   * (flag-2 items parsed in the socket handler, issue-log timers, `ping`, the 100 s connect retry).
   */
  client?: MemcachedClient
  /** An already-configured local client instead of `local`; the caller ends it. */
  localClient?: MemcachedClient
  /**
   * What the `servers` and `local` speak: `'auto'` asks each server once per connection (`mn`; a
   * server or proxy that answers an error or closes the connection is spoken to in the text
   * protocol only), `'meta'` says every server is memcached >= 1.6 (no question asked), `'text'`
   * never sends a meta command (for a proxy that neither answers nor closes on one). Meta commands
   * save round trips and bytes: a save learns the new version, existence checks send no value, and
   * `local` copies can be checked. An injected client is always `'text'`. @default 'auto'
   */
  protocol?: 'auto' | 'meta' | 'text'
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

/** The addresses (each once) and the bucket entries (with weights) of a server list. */
function serverList(value: unknown, option: string, crc32: boolean): { addresses: string[]; weighted: Array<string | WeightedServer> } {
  const list = typeof value === 'string' ? [value] : value
  if (!Array.isArray(list))
    throw new TypeError(`tied-session: memcachedStore option \`${option}\` must be a "host:port" string or an array of them`)
  const weighted = list.map((entry: unknown): string | WeightedServer => {
    if (!Array.isArray(entry)) return hostPort(entry, option)
    const [server, weight] = entry as unknown[]
    if (!crc32 || entry.length !== 2 || !Number.isInteger(weight) || (weight as number) < 1 || (weight as number) > 1000) {
      throw new TypeError(
        `tied-session: memcachedStore option \`${option}\` takes ["host:port", weight] (weight 1-1000) only with distribution: 'crc32'`,
      )
    }
    return [hostPort(server, option), weight as number]
  })
  const addresses = [...new Set(weighted.map((e) => (typeof e === 'string' ? e : e[0])))]
  return { addresses, weighted }
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
  const distribution = options.distribution ?? 'ketama'
  if (distribution !== 'ketama' && distribution !== 'crc32')
    throw new TypeError(`tied-session: memcachedStore option \`distribution\` must be 'ketama' or 'crc32', got ${String(distribution)}`)
  const crc32 = distribution === 'crc32'
  const principalList = servers === undefined ? undefined : serverList(servers, 'servers', crc32)
  const localList = local === undefined ? undefined : serverList(local, 'local', crc32)
  const principal = principalList?.addresses
  if (principal?.length === 0) throw new TypeError('tied-session: memcachedStore option `servers` must name at least one server')
  const requestTimeout = options.requestTimeout ?? 1000
  if (typeof requestTimeout !== 'number' || !(requestTimeout > 0 && requestTimeout <= 2 ** 31 - 1)) {
    throw new TypeError(
      `tied-session: memcachedStore option \`requestTimeout\` must be a positive number of milliseconds, got ${String(requestTimeout)}`,
    )
  }
  const replicas = options.replicas ?? 0
  if (replicas !== 0) {
    if (client !== undefined)
      throw new TypeError('tied-session: memcachedStore option `replicas` needs `servers`; an injected `client` cannot replicate')
    const most = principal!.length - 1
    if (!Number.isInteger(replicas) || replicas < 0 || replicas > most) {
      throw new TypeError(
        `tied-session: memcachedStore option \`replicas\` must be an integer from 0 to ${most} (one less than the servers), got ${String(replicas)}`,
      )
    }
    if (local !== undefined || localClient !== undefined)
      throw new TypeError('tied-session: memcachedStore option `replicas` cannot be combined with `local` (not supported yet)')
  }
  const protocol = options.protocol ?? 'auto'
  if (protocol !== 'auto' && protocol !== 'meta' && protocol !== 'text')
    throw new TypeError(`tied-session: memcachedStore option \`protocol\` must be 'auto', 'meta' or 'text', got ${String(protocol)}`)
  if (protocol === 'meta' && (client !== undefined || localClient !== undefined))
    throw new TypeError(
      "tied-session: memcachedStore option `protocol: 'meta'` needs `servers`: an injected client speaks only the text protocol",
    )
  return {
    servers: principal,
    replicas,
    protocol,
    local: localList?.addresses ?? [],
    distribution,
    /** The bucket lists for crc32 (servers with their weights, in order). */
    weighted: { servers: principalList?.weighted ?? [], local: localList?.weighted ?? [] },
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
