/**
 * The public verbs: tieSession, save, untie, reload, destroy, regenerate, isTied.
 */
import { SessionError } from './errors.js'
import { checkId, newId } from './ids.js'
import { json, type Serializer } from './serializers.js'
import { destroyAll, liveSessions, md5Hex, reindex } from './principal.js'
import { Session, bookNewId, notFound, parseData, stampDigest, uidOf, type SessionConfig } from './session.js'
import { fileStore } from './stores/file.js'
import { closeStores as closeMemcachedStores, sharedMemcachedStore, type MemcachedStoreOptions } from './stores/memcached.js'
import type { Store } from './stores/store.js'
import { HOOKS, ID_FIELD } from './tracker.js'

/** Options of {@link tieSession}. Unknown keys are a TypeError. */
export interface TieOptions {
  /** The store to use; without it and without `servers`, the embedded file store. */
  store?: Store
  /** Principal memcached servers, `host:port`: every write goes here. One store is shared per configuration. */
  servers?: MemcachedStoreOptions['servers']
  /** Local memcached servers, `host:port`: reads try them first. @default [] */
  local?: MemcachedStoreOptions['local']
  /** Seconds a copy made into `local` lives at most. @default 60 */
  localTtl?: number
  /** Milliseconds a memcached call may take before `ERR_STORE_UNAVAILABLE`. @default 1000 */
  requestTimeout?: number
  /** Largest stored session, in bytes; larger is `ERR_TOO_LARGE` and nothing is written. @default 1000000 */
  maxValueBytes?: number
  /** Seconds until a session that is not saved again expires; 0 = never. @default 86400 */
  expires?: number
  /** Apache::Session::Memorycached's name for `expires` (seconds). */
  timeout?: number
  /** Write nothing at tie time; store a new session only when a save has a change. @default false */
  updateOnly?: boolean
  /** Flush the writes of each synchronous burst at the end of the tick. @default true */
  autoSave?: boolean
  /** How data becomes the stored string. @default json */
  serializer?: Serializer
  /** Prefix of every key this session writes. @default '' (Memorycached writes bare keys) */
  namespace?: string
  /**
   * `'none'`: optimistic saves (compare-and-swap, merge by top-level key). `'exclusive'`: hold a
   * lock on the session from tie to untie/destroy, so no other tie of it runs meanwhile. @default 'none'
   */
  lock?: 'none' | 'exclusive'
  /** Milliseconds to wait for an exclusive lock before `ERR_LOCKED`. @default 5000 */
  lockTimeout?: number
  /** Seconds an exclusive lock lasts at most (a lease): a crashed holder frees it then; keep it above your longest hold. @default 30 */
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

/** A tied session: the user's data plus the read-only id and `await using` support. */
export type Tied<T extends object = Record<string, unknown>> = T & {
  readonly [ID_FIELD]: string
  [Symbol.asyncDispose](): Promise<void>
}

const DEFAULTS = { expires: 86400, updateOnly: false, autoSave: true, serializer: json, namespace: '' } as const
const MEMCACHED = ['servers', 'local', 'localTtl', 'requestTimeout', 'maxValueBytes'] as const
const KNOWN = new Set([
  'store',
  ...MEMCACHED,
  'expires',
  'timeout',
  'updateOnly',
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

let defaultStore: Store | undefined

function option(name: string, ok: boolean, expected: string): void {
  if (!ok) throw new TypeError(`tied-session: option ${name} must be ${expected}`)
}

function seconds(name: string, value: unknown): number {
  option(name, typeof value === 'number' && Number.isInteger(value) && value >= 0, 'a whole number of seconds >= 0 (0 = never)')
  return value as number
}

/** Checks options once at the boundary and merges the defaults. */
export function resolveOptions(opts: TieOptions = {}): SessionConfig & { updateOnly: boolean } {
  option('options', typeof opts === 'object' && opts !== null, 'an object')
  for (const key of Object.keys(opts)) {
    if (!KNOWN.has(key)) throw new TypeError(`tied-session: unknown option ${JSON.stringify(key)}; known options: ${[...KNOWN].join(', ')}`)
  }
  const o = opts as Record<string, unknown>
  const defined = (k: string) => o[k] !== undefined
  if (defined('expires') && defined('timeout') && o.expires !== o.timeout) {
    throw new TypeError(
      `tied-session: options expires (${String(o.expires)}) and timeout (${String(o.timeout)}) disagree; timeout is only an alias of expires, give one`,
    )
  }
  const ttl = seconds(defined('expires') ? 'expires' : 'timeout', o.expires ?? o.timeout ?? DEFAULTS.expires)
  const serializer = opts.serializer ?? DEFAULTS.serializer
  option(
    'serializer',
    typeof serializer.stringify === 'function' && typeof serializer.parse === 'function',
    'an object with stringify and parse',
  )
  const namespace = opts.namespace ?? DEFAULTS.namespace
  option(
    'namespace',
    typeof namespace === 'string' && /^[\x21-\x7e]{0,64}$/.test(namespace),
    'a string of at most 64 printable ASCII chars, no spaces',
  )
  for (const name of ['updateOnly', 'autoSave'] as const) option(name, o[name] === undefined || typeof o[name] === 'boolean', 'a boolean')
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
  const store = opts.store ?? memcachedFrom(o) ?? (defaultStore ??= fileStore())
  let acquire: SessionConfig['acquire']
  if (o.lock === 'exclusive') {
    const { lock } = store
    if (lock === undefined) throw new TypeError("tied-session: option lock 'exclusive' needs a store with lock(); this store has none")
    const signal = opts.signal
    acquire = (key) => lock.call(store, key, { ttl: lockTtl, wait: lockTimeout as number, ...(signal ? { signal } : {}) })
  }
  return {
    store,
    principal: opts.principal === undefined ? undefined : { field: opts.principal, maxSessions: opts.maxSessions },
    acquire,
    namespace,
    ttl,
    serializer,
    autoSave: opts.autoSave ?? DEFAULTS.autoSave,
    updateOnly: opts.updateOnly ?? DEFAULTS.updateOnly,
    onError: opts.onError,
  }
}

/** The shared memcached store for `servers` + `local` (+ tuning), or undefined without `servers`. */
function memcachedFrom(o: Record<string, unknown>): Store | undefined {
  const given = MEMCACHED.filter((k) => o[k] !== undefined)
  if (o.servers === undefined) {
    if (given.length > 0) throw new TypeError(`tied-session: option ${given[0]} needs servers (the principal memcached servers)`)
    return undefined
  }
  if (o.store !== undefined) throw new TypeError('tied-session: give either store or servers, not both')
  const options: Record<string, unknown> = {}
  for (const k of given) options[k] = o[k]
  return sharedMemcachedStore(options as MemcachedStoreOptions)
}

/** Closes every store tieSession made from `servers` options, so that a script can exit at once. */
export async function closeStores(): Promise<void> {
  await closeMemcachedStores()
  const store = defaultStore
  defaultStore = undefined
  await store?.close()
}

/**
 * Ties a session: `undefined`, `null` or `''` creates one with a new id, any other id loads
 * it (`ERR_SESSION_NOT_FOUND` when unknown or expired, `ERR_INVALID_ID` before any I/O when
 * malformed). Reading and writing the returned object reads and writes the session.
 *
 * @example
 * const s = await tieSession<{ cart?: { items: number[] } }>(undefined)
 * s.cart = { items: [] }
 * s.cart.items.push(42)
 * await untie(s)
 */
export async function tieSession<T extends object = Record<string, unknown>>(id?: string | null, opts: TieOptions = {}): Promise<Tied<T>> {
  const fresh = id === undefined || id === null || id === ''
  if (!fresh) checkId(id)
  // the session keeps this object as its config (updateOnly included): no copy per tie
  const config = resolveOptions(opts)
  let session: Session
  if (fresh) {
    session = await create(config, config.updateOnly)
    // nobody else knows the new id yet, but the holder's lock must be there before it tells anyone
    if (config.acquire) session.holdLock(await config.acquire(config.namespace + session.id))
  } else {
    const unlock = await config.acquire?.(config.namespace + id)
    try {
      session = await load(config, id)
    } catch (err) {
      await unlock?.()
      throw err
    }
    if (unlock) session.holdLock(unlock)
  }
  return session.proxy as Tied<T>
}

async function create(config: SessionConfig, updateOnly: boolean): Promise<Session> {
  if (updateOnly) {
    const id = newId()
    return new Session(config, id, { [ID_FIELD]: id }, { version: undefined, text: undefined, stored: false })
  }
  const { id, text } = await bookNewId(config, {})
  return new Session(config, id, { [ID_FIELD]: id }, { version: undefined, text, stored: true })
}

async function load(config: SessionConfig, id: string): Promise<Session> {
  const entry = await config.store.get(config.namespace + id)
  if (entry === undefined) throw notFound(id)
  const data = parseData(config.serializer, entry.value, id)
  return new Session(config, id, data, { version: entry.version, text: entry.value, stored: true })
}

/** The session behind a tied object (its root proxy answers HOOKS), or undefined. */
function sessionFrom(s: unknown): Session | undefined {
  const hooks = typeof s === 'object' && s !== null ? (s as Record<symbol, unknown>)[HOOKS] : undefined
  return hooks instanceof Session ? hooks : undefined
}

function sessionOf(s: object, verb: string): Session {
  const session = sessionFrom(s)
  if (session === undefined) throw new TypeError(`tied-session: ${verb}() takes an object returned by tieSession()`)
  return session
}

/** Writes pending changes now and throws what went wrong (also a failed automatic flush). */
export async function save(s: object): Promise<void> {
  return sessionOf(s, 'save').save()
}

/** Writes pending changes and releases the session; idempotent. Later writes to `s` throw. */
export async function untie(s: object): Promise<void> {
  return sessionOf(s, 'untie').untie()
}

/** Reads the session again from the store, skipping read caches; unsaved changes are dropped. */
export async function reload(s: object): Promise<void> {
  return sessionOf(s, 'reload').reload()
}

/** Removes the session from the store now (Apache::Session's `tied(%s)->delete`) and releases it. */
export async function destroy(s: object): Promise<void> {
  await sessionOf(s, 'destroy').destroy()
}

/**
 * Gives the session a new id, keeps its data and deletes the old id: call it at login, the
 * defence against session fixation. Returns the new id (`s._session_id` shows it too).
 */
export async function regenerate(s: object): Promise<string> {
  const session = sessionOf(s, 'regenerate')
  await session.regenerate()
  return session.id
}

/** True when `s` is a tied session that has not been untied or destroyed. */
export function isTied(s: unknown): boolean {
  return sessionFrom(s)?.open === true
}

/** The data {@link updateSession} saved: plain data (not tied) with its id. */
export type Saved<T extends object = Record<string, unknown>> = T & { readonly [ID_FIELD]: string }

/** Compare-and-swap rounds of {@link updateSession} before ERR_CONFLICT. */
const UPDATE_TRIES = 50

/**
 * An atomic read-modify-write of one session, like Catalyst FastMmap's get_and_set_session_data:
 * `fn` gets the current data and changes it in place or returns new data; the result is saved
 * with compare-and-swap, and on conflict the session is read again and `fn` called again (so `fn`
 * must not have side effects). No write when nothing changed. Returns the saved data.
 *
 * @example
 * await updateSession(id, (s) => { s.balance -= 10 }, { servers })
 */
export async function updateSession<T extends object = Record<string, unknown>>(
  id: string,
  fn: (data: T) => T | void | Promise<T | void>,
  opts: TieOptions = {},
): Promise<Saved<T>> {
  checkId(id)
  if (typeof fn !== 'function') throw new TypeError('tied-session: updateSession(id, fn) needs a function')
  const config = resolveOptions(opts)
  const { store, serializer, principal, ttl } = config
  const key = config.namespace + id
  for (let attempt = 0; attempt < UPDATE_TRIES; attempt++) {
    const entry = await store.get(key, { consistent: true })
    if (entry === undefined) throw notFound(id)
    const data = parseData(serializer, entry.value, id)
    const before = principal ? uidOf(data[principal.field]) : undefined
    const result = await fn(data as T)
    const next = (serializer.copy ? serializer.copy(result ?? data, '') : (result ?? data)) as Record<string, unknown>
    if (typeof next !== 'object' || next === null || Array.isArray(next))
      throw new TypeError('tied-session: updateSession fn must return an object or undefined')
    next[ID_FIELD] = id
    if (principal) stampDigest(next, principal.field)
    const text = serializer.stringify(next)
    if (text === entry.value) return next as Saved<T>
    const written = await store.write(key, text, { ttl, mode: 'cas', version: entry.version ?? '' })
    if (written === 'not_found') throw notFound(id)
    if (written === 'stored') {
      if (principal) {
        const place = { store, namespace: config.namespace }
        await reindex(place, before, uidOf(next[principal.field]), { id, ttl, maxSessions: principal.maxSessions })
      }
      return next as Saved<T>
    }
    // another writer came first: wait a little, at random, so that competing writers spread out
    await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(100, 5 * (attempt + 1))))
  }
  throw new SessionError('ERR_CONFLICT', `session ${id} kept changing under updateSession (${UPDATE_TRIES} tries); try again`)
}

function indexPlace(uid: unknown, opts: TieOptions, verb: string) {
  const id = uidOf(uid)
  if (id === undefined) throw new TypeError(`tied-session: ${verb}(uid) needs a user id (a non-empty string or a number)`)
  const config = resolveOptions(opts)
  return { place: { store: config.store, namespace: config.namespace }, digest: md5Hex(id), ttl: config.ttl }
}

/**
 * The ids of the user's live sessions, newest first, from the reverse index that saves with
 * `principal` keep. Takes the same store options as tieSession.
 *
 * @example
 * const ids = await findSessions('dwho', { servers, principal: 'uid' })
 */
export async function findSessions(uid: string | number, opts: TieOptions = {}): Promise<string[]> {
  const { place, digest, ttl } = indexPlace(uid, opts, 'findSessions')
  return liveSessions(place, digest, ttl)
}

/**
 * Destroys every session of the user (single logout) and returns how many. Processes that still
 * hold one of them tied get ERR_SESSION_NOT_FOUND at their next save.
 */
export async function destroySessions(uid: string | number, opts: TieOptions = {}): Promise<number> {
  const { place, digest } = indexPlace(uid, opts, 'destroySessions')
  return destroyAll(place, digest)
}
