/**
 * The options of tieSession and the other verbs: defaults in one place, checked once at the
 * boundary with a TypeError that names the option, merged into a SessionConfig. An option not
 * given comes from its TIED_SESSION_* environment variable, if set (./environment.ts).
 */
import { ENVIRONMENT, currentEnvironment, forgetEnvironment } from './environment.js'
import { Lease } from './lease.js'
import { json } from './json.js'
import type { Serializer } from './serializers.js'
import { flushScheduled } from './autosave.js'
import type { SessionConfig } from './session.js'
import type { MemcachedStoreOptions } from './stores/memcached.js'
import type { Store } from './stores/store.js'
import { closeTieStores, MEMCACHED, storeFor } from './tie-stores.js'
import { ID_FIELD } from './tracker.js'

/** Options of {@link tieSession}. Unknown keys are a TypeError. */
export interface TieOptions {
  /** The store to use; without it and without `servers`, the embedded file store. */
  store?: Store
  /** Principal memcached servers, `host:port`: every write goes here. One store is shared per configuration. */
  servers?: MemcachedStoreOptions['servers']
  /** Local memcached servers, `host:port`: reads try them first. @default [] */
  local?: MemcachedStoreOptions['local']
  /** How a key picks its server: `'ketama'`, or `'crc32'` as Perl's Cache::Memcached (for pools shared with Perl). @default 'ketama' */
  distribution?: MemcachedStoreOptions['distribution']
  /** Seconds a copy made into `local` lives at most. @default 60 */
  localTtl?: number
  /** Serve `local` copies without checking them against the principal (Memorycached's way; a destroy elsewhere shows after `localTtl`). @default false */
  trustLocal?: boolean
  /** Milliseconds a memcached call may take before `ERR_STORE_UNAVAILABLE`. @default 1000 */
  requestTimeout?: number
  /** Largest stored session, in bytes; larger is `ERR_TOO_LARGE` and nothing is written. @default 1000000 */
  maxValueBytes?: number
  /** How many more memcached servers hold a copy of each session and index key, so a server that dies logs no one out (README: High availability). @default 0 */
  replicas?: number
  /** How to talk to memcached: `'auto'` asks each server once (`mn`), `'meta'` or `'text'` (a proxy such as twemproxy, memcached < 1.6) say it. @default 'auto' */
  protocol?: MemcachedStoreOptions['protocol']
  /** Seconds until a session that is not saved again expires; 0 = never. @default 86400 */
  expires?: number
  /** Apache::Session::Memorycached's name for `expires` (seconds). */
  timeout?: number
  /**
   * Sliding expiry: every tie, read-only ones included, extends the session's TTL to `expires`
   * (an idle timeout) without rewriting it, and keeps its user index alive. On memcached >= 1.6 it
   * rides on the tie's own read (`mg … T`): no extra command. @default false
   */
  rolling?: boolean
  /**
   * Seconds from the session's creation (its `_utime`) after which it is gone, whatever its
   * activity (an absolute timeout: Lemonldap::NG's `timeout`); 0 = no limit. @default 0
   */
  maxLifetime?: number
  /** Write nothing at tie time; store a new session only when a save has a change. @default false */
  updateOnly?: boolean
  /**
   * tieSession only: create the session under the given id instead of loading it (booked at once
   * with `add`, as a new session is), for ids made elsewhere (express-session's `genid`). An id the
   * store already holds is never overwritten: `ERR_CONFLICT`. Not with `updateOnly`. @default false
   */
  create?: boolean
  /** Flush the writes of each synchronous burst at the end of the tick. @default true */
  autoSave?: boolean
  /** How data becomes the stored string. @default json */
  serializer?: Serializer
  /** Prefix of every key this session writes. @default '' (Memorycached writes bare keys) */
  namespace?: string
  /**
   * `'none'`: optimistic saves (compare-and-swap; another writer's save is merged three ways, at every depth). `'exclusive'`: hold a
   * lock on the session from tie to untie/destroy, so no other tie of it runs meanwhile. @default 'none'
   */
  lock?: 'none' | 'exclusive'
  /** Milliseconds to wait for an exclusive lock before `ERR_LOCKED`. @default 5000 */
  lockTimeout?: number
  /**
   * Seconds an exclusive lock lasts at most (a lease): a crashed holder frees it then; keep it above
   * your longest hold. A holder past it, less a margin of a quarter of it (at most 1 s), can no
   * longer write: its save, untie, destroy or regenerate fails with `ERR_LOCKED`. @default 30
   */
  lockTtl?: number
  /** Aborts the wait for an exclusive lock. */
  signal?: AbortSignal
  /** The session field holding the user id; saves index the session under md5_hex(uid), as Memorycached does. */
  principal?: string
  /** With `principal`: a save that gives the user more live sessions than this destroys the oldest. */
  maxSessions?: number
  /** Called with every failed automatic flush (the error is also thrown by the next save/untie). */
  onError?: (error: unknown, session: object) => void
}

const DEFAULTS = { expires: 86400, updateOnly: false, autoSave: true, serializer: json, namespace: '' } as const
const KNOWN = new Set([
  'store',
  ...MEMCACHED,
  'expires',
  'timeout',
  'rolling',
  'maxLifetime',
  'updateOnly',
  'create',
  'autoSave',
  'serializer',
  'namespace',
  'lock',
  'lockTimeout',
  'lockTtl',
  'signal',
  'principal',
  'maxSessions',
  'onError',
])

function option(name: string, ok: boolean, expected: string): void {
  if (!ok) throw new TypeError(`tied-session: option ${name} must be ${expected}`)
}

function seconds(name: string, value: unknown): number {
  option(name, typeof value === 'number' && Number.isInteger(value) && value >= 0, 'a whole number of seconds >= 0 (0 = never)')
  return value as number
}

type Resolved = ReturnType<typeof resolveOptions>

/** The options of the last {@link resolveTieOptions} call (a shallow copy), and what they resolved to; forgotten by closeStores(). */
let lastTie: { opts: Record<string, unknown>; env: unknown; config: Resolved } | undefined

/**
 * {@link resolveOptions} for tieSession, which runs it on every tie: options with the same values
 * as the last call's (a new object literal each time, as callers write them) give the same config,
 * already checked. Values compare by identity, arrays (servers) element by element.
 */
export function resolveTieOptions(opts: TieOptions = {}): Resolved {
  const env = currentEnvironment()
  if (lastTie !== undefined && lastTie.env === env && sameValues(lastTie.opts, opts as Record<string, unknown>)) return lastTie.config
  const config = resolveOptions(opts)
  const copy: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(opts)) copy[k] = Array.isArray(v) ? [...(v as unknown[])] : v
  lastTie = { opts: copy, env, config }
  return config
}

/** Same keys, and the same values: identical, or arrays of identical elements. */
function sameValues(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  if (typeof b !== 'object' || b === null) return false
  let count = 0
  for (const k in b) {
    if (!Object.hasOwn(b, k)) continue
    if (!Object.hasOwn(a, k)) return false
    count++
    const u = a[k]
    const v = b[k]
    if (u === v && !Array.isArray(v)) continue
    if (!Array.isArray(u) || !Array.isArray(v) || u.length !== v.length || u.some((e, i) => e !== v[i])) return false
  }
  for (const k in a) if (Object.hasOwn(a, k)) count-- // no array of keys: this runs on every tie
  return count === 0
}

/**
 * Checks options once at the boundary and merges the defaults: an option not given comes from its
 * TIED_SESSION_* environment variable, then from the built-in default. `storeGiven` says whether
 * a store was chosen (option store or servers, TIED_SESSION_SERVERS or TIED_SESSION_DIR) rather
 * than the default file store.
 */
export function resolveOptions(opts: TieOptions = {}): SessionConfig & { updateOnly: boolean; storeGiven: boolean } {
  option('options', typeof opts === 'object' && opts !== null, 'an object')
  for (const key of Object.keys(opts)) {
    if (!KNOWN.has(key)) throw new TypeError(`tied-session: unknown option ${JSON.stringify(key)}; known options: ${[...KNOWN].join(', ')}`)
  }
  const o = withEnvironment(opts as Record<string, unknown>)
  const defined = (k: string) => o[k] !== undefined
  if (defined('expires') && defined('timeout') && o.expires !== o.timeout) {
    throw new TypeError(
      `tied-session: options expires (${String(o.expires)}) and timeout (${String(o.timeout)}) disagree; timeout is only an alias of expires, give one`,
    )
  }
  const ttl = seconds(defined('expires') ? 'expires' : 'timeout', o.expires ?? o.timeout ?? DEFAULTS.expires)
  const serializer = (o.serializer as Serializer | undefined) ?? DEFAULTS.serializer
  option(
    'serializer',
    typeof serializer.stringify === 'function' && typeof serializer.parse === 'function',
    'an object with stringify and parse',
  )
  const namespace = (o.namespace as string | undefined) ?? DEFAULTS.namespace
  option(
    'namespace',
    typeof namespace === 'string' && /^[\x21-\x7e]{0,64}$/.test(namespace),
    'a string of at most 64 printable ASCII chars, no spaces',
  )
  if (o.create === true && o.updateOnly === true)
    throw new TypeError('tied-session: option create books the id at tie time; it cannot be combined with updateOnly')
  const maxLifetime = seconds('maxLifetime', o.maxLifetime ?? 0)
  for (const name of ['updateOnly', 'create', 'autoSave', 'rolling'] as const)
    option(name, o[name] === undefined || typeof o[name] === 'boolean', 'a boolean')
  option('lock', o.lock === undefined || o.lock === 'none' || o.lock === 'exclusive', "'none' or 'exclusive'")
  const lockTimeout = o.lockTimeout ?? 5000
  option('lockTimeout', typeof lockTimeout === 'number' && lockTimeout >= 0 && lockTimeout <= 2 ** 31 - 1, 'a number of milliseconds >= 0')
  const lockTtl = seconds('lockTtl', o.lockTtl ?? 30)
  option('lockTtl', lockTtl >= 1, 'at least 1 second')
  option('signal', o.signal === undefined || o.signal instanceof AbortSignal, 'an AbortSignal')
  option(
    'principal',
    o.principal === undefined || (typeof o.principal === 'string' && o.principal !== '' && o.principal !== ID_FIELD),
    'a field name',
  )
  option(
    'maxSessions',
    o.maxSessions === undefined || (Number.isInteger(o.maxSessions) && (o.maxSessions as number) >= 1),
    'an integer >= 1',
  )
  if (o.maxSessions !== undefined && o.principal === undefined)
    throw new TypeError('tied-session: option maxSessions needs principal (the field naming the user)')
  option('onError', o.onError === undefined || typeof o.onError === 'function', 'a function')
  if (opts.store !== undefined) {
    option(
      'store',
      typeof opts.store.get === 'function' && typeof opts.store.write === 'function',
      'a Store (get, write, delete, touch, close)',
    )
  }
  const dir = o[DIR] as string | undefined
  const store = opts.store ?? storeFor(o, dir)
  let acquire: SessionConfig['acquire']
  if (o.lock === 'exclusive') {
    const { lock } = store
    if (lock === undefined) throw new TypeError("tied-session: option lock 'exclusive' needs a store with lock(); this store has none")
    const signal = opts.signal
    acquire = async (key) => {
      const release = await lock.call(store, key, { ttl: lockTtl, wait: lockTimeout as number, ...(signal ? { signal } : {}) })
      return new Lease(key, release, lockTtl)
    }
  }
  return {
    store,
    principal: o.principal === undefined ? undefined : { field: o.principal as string, maxSessions: opts.maxSessions },
    acquire,
    namespace,
    ttl,
    rolling: o.rolling === true,
    maxLifetime,
    serializer,
    autoSave: opts.autoSave ?? DEFAULTS.autoSave,
    updateOnly: opts.updateOnly ?? DEFAULTS.updateOnly,
    onError: opts.onError,
    storeGiven: opts.store !== undefined || o.servers !== undefined || dir !== undefined,
  }
}

/** The key under which {@link withEnvironment} passes TIED_SESSION_DIR on (no option names a directory). */
const DIR = Symbol('directory')

/**
 * `o` with the options it does not give taken from the environment. The store variables
 * (TIED_SESSION_SERVERS, TIED_SESSION_DIR) apply only when neither store nor servers is given, as
 * a --dir or --servers flag overrides them in the command; TIED_SESSION_LOCAL and
 * TIED_SESSION_TIMEOUT apply to memcached servers from the option or the variable.
 */
function withEnvironment(o: Record<string, unknown>): Record<string | symbol, unknown> {
  const env = currentEnvironment()
  const merged: Record<string | symbol, unknown> = { ...o }
  if (o.namespace === undefined && env.namespace !== undefined) merged.namespace = env.namespace
  if (o.principal === undefined && env.principal !== undefined) merged.principal = env.principal
  if (o.expires === undefined && o.timeout === undefined && env.expires !== undefined) merged.expires = env.expires
  if (o.store !== undefined) return merged
  if (o.servers === undefined) {
    if (env.servers !== undefined && env.dir !== undefined) {
      throw new TypeError(`tied-session: ${ENVIRONMENT.servers} and ${ENVIRONMENT.dir} name two stores; set one`)
    }
    if (env.dir !== undefined) {
      if (env.local !== undefined) throw new TypeError(`tied-session: ${ENVIRONMENT.local} needs servers (or ${ENVIRONMENT.servers})`)
      merged[DIR] = env.dir
      return merged
    }
    if (env.servers === undefined) {
      if (env.local !== undefined) throw new TypeError(`tied-session: ${ENVIRONMENT.local} needs servers (or ${ENVIRONMENT.servers})`)
      return merged
    }
    merged.servers = env.servers
  }
  if (o.local === undefined && env.local !== undefined) merged.local = env.local
  if (o.requestTimeout === undefined && env.requestTimeout !== undefined) merged.requestTimeout = env.requestTimeout
  return merged
}

/**
 * Closes every store tieSession made from `servers` options (and the default file store), so that
 * a script can exit at once, and has the TIED_SESSION_* variables read again by the next call. Automatic saves still scheduled run first: a write is never dropped
 * by closing; one that fails is kept for the next save/untie and given to onError.
 */
export async function closeStores(): Promise<void> {
  forgetEnvironment() // the TIED_SESSION_* variables are read again by the next call
  lastTie = undefined // its config names a store closed below
  await flushScheduled()
  await closeTieStores()
}
