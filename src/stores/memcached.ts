import { randomBytes } from 'node:crypto'
import { SessionError } from '../errors.js'
import {
  expiryTime,
  type Entry,
  type LockOptions,
  type LockRelease,
  type Store,
  type Value,
  type WriteOptions,
  type WriteResult,
} from './store.js'
import { pollLock } from './lock.js'
import { Crc32Buckets } from './memcached-crc32.js'
import { KeyLister } from './memcached-keys.js'
import { LocalCache } from './memcached-local.js'
import { injectedPool } from './memcached-injected.js'
import { LateLocks } from './memcached-late-locks.js'
import { resolveOptions, THIRTY_DAYS, type Config, type MemcachedStoreOptions } from './memcached-options.js'
import { Replicas } from './memcached-replicas.js'
import { MARKER_PREFIX } from './memcached-suspects.js'
import { CAS_UNIQUE, WireClient, type Item, type MetaSetOptions, type Pool } from './memcached-wire.js'

export type { MemcachedCallback, MemcachedClient } from './memcached-injected.js'
export type { MemcachedStoreOptions } from './memcached-options.js'

/** A memcached store: a {@link Store} that also tells its servers. */
export type MemcachedStore = Store &
  Required<Pick<Store, 'lock' | 'head'>> & { readonly servers: readonly string[]; readonly local: readonly string[] }

const WRITE_MODES = new Set<unknown>(['set', 'add', 'replace', 'cas'])
/** How many keys' expiry times a store remembers from its own writes and touches. */
const EXPIRY_MEMORY = 10_000
/** An exptime that memcached reads as a Unix time (over 30 days), in 1970: the item is expired at once. */
const PAST = THIRTY_DAYS + 1
/** The lock of key `k` is the key `k:lock`, on the principal servers only; keys() leaves such keys out. */
const LOCK_SUFFIX = ':lock'

/**
 * A store on memcached, as Apache::Session::Memorycached: writes go to the principal `servers`,
 * reads try `local` first and copy principal hits into it. Keys are checked (1-250 bytes, no
 * space or control byte) and values sized before anything is sent. Values are stored byte for byte
 * with their client flags (Perl's Cache::Memcached: 1 Storable, 2 gzip) and read back with them.
 *
 * A read served by `local` has no `version`; a `cas` write without a version answers `exists`
 * without I/O, so the caller re-reads with `{ consistent: true }` (the principal, with `gets`) and
 * writes again at the principal's version: a stale local copy never makes a `cas` succeed.
 *
 * @example
 * const store = memcachedStore({ servers: ['10.0.0.15:11211'], local: '127.0.0.1:11211' })
 * await store.write('k', 'v', { ttl: 3600, mode: 'set' })
 * await store.close()
 */
export function memcachedStore(options: MemcachedStoreOptions): MemcachedStore {
  return createStore(resolveOptions(options), undefined)
}

/** The store for a checked configuration; `onClose` runs when it closes (memcached-shared.ts forgets it then). */
export function createStore(config: Config, onClose: (() => void) | undefined): MemcachedStore {
  const { requestTimeout, maxValueBytes, localTtl } = config
  // crc32: Cache::Memcached's buckets, so that Perl processes on the same pool pick the same servers
  const buckets = (side: 'servers' | 'local') => (config.distribution === 'crc32' ? new Crc32Buckets(config.weighted[side]) : undefined)
  const principal = config.client
    ? injectedPool(config.client, requestTimeout)
    : new WireClient(config.servers!, requestTimeout, buckets('servers'), config.protocol)
  const local = config.localClient
    ? injectedPool(config.localClient, requestTimeout)
    : config.local.length > 0
      ? new WireClient(config.local, requestTimeout, buckets('local'), config.protocol)
      : undefined
  const pools = local ? [principal, local] : [principal]
  // replicas > 0: get, write, delete and touch go to every copy of a key (see memcached-replicas.ts)
  const replicas =
    config.replicas > 0
      ? new Replicas({
          servers: config.servers!,
          replicas: config.replicas,
          requestTimeout,
          crc32: buckets('servers'),
          exptime: (ttl) => exptime(ttl),
        })
      : undefined
  const lister = new KeyLister(requestTimeout)
  const cache = local
    ? new LocalCache({ principal, local, trust: config.trustLocal, readPrincipal, copyTtl: (key) => copyTtl(key) })
    : undefined
  /** Key -> when it expires (ms), as this store last wrote or touched it; oldest first. */
  const expiries = new Map<string, number>()
  /** Releases of the locks this store holds: close() releases them. */
  const held = new Set<() => Promise<void>>()
  let closing: Promise<void> | undefined

  const closedError = () => new SessionError('ERR_STORE_UNAVAILABLE', 'the memcached store is closed; create a new one')

  /** Keys that need no closer look (session ids always are): 1-250 word characters, '.', ':' and '-'. */
  const PLAIN_KEY = /^[\w.:-]{1,250}$/

  /** No injected client: a plain key needs no look at the pools (the check runs on every call). */
  const wireOnly = pools.every((pool) => !pool.injected)

  function checkKey(key: string, on: Pool[] = pools): void {
    if (typeof key !== 'string') throw new TypeError(`tied-session: a store key must be a string, got ${typeof key}`)
    if (
      PLAIN_KEY.test(key) &&
      (wireOnly || on.every((pool) => !pool.injected || (pool.namespace === '' && key !== 'cas' && key !== '__proto__')))
    )
      return
    for (const pool of on) {
      const full = pool.namespace + key
      const bytes = Buffer.byteLength(full)
      let reason = ''
      if (bytes === 0 || bytes > 250) reason = `it is ${bytes} bytes; memcached takes 1 to 250`
      // eslint-disable-next-line no-control-regex -- control characters are what this looks for
      else if (/[\u0000-\u0020\u007f]|\s/u.test(full)) reason = 'memcached keys hold no space, line break or control character'
      // The npm client puts the key into the command with String#replace, which expands these patterns.
      else if (pool.injected && /\$[$&'`]/.test(key)) reason = 'the injected memcached client garbles "$$", "$&", "$\'" and "$`" in keys'
      // It returns `gets` as { [key]: value, cas }, so these keys lose their value.
      else if (pool.injected && (full === 'cas' || full === '__proto__'))
        reason = 'the injected memcached client cannot read it back with gets'
      if (reason) throw new SessionError('ERR_INVALID_ID', `${JSON.stringify(key)} cannot be a memcached key: ${reason}`)
    }
  }

  function checkWrite(key: string, value: Value, opts: WriteOptions): void {
    if (typeof value !== 'string' && !Buffer.isBuffer(value))
      throw new TypeError(`tied-session: the value for "${key}" must be a string or a Buffer, got ${typeof value}`)
    const flags = opts?.flags ?? 0
    // memcached's client flags are an unsigned 32-bit number
    if (!Number.isInteger(flags) || flags < 0 || flags > 0xffffffff)
      throw new TypeError(`tied-session: flags must be a whole number from 0 to 2^32-1, got ${String(flags)}`)
    if (!WRITE_MODES.has(opts?.mode))
      throw new TypeError(`tied-session: write mode must be set, add, replace or cas, got ${String(opts?.mode)}`)
    checkTtl(opts.ttl)
    if (value.length * 3 <= maxValueBytes && !principal.injected) return // UTF-8 takes at most 3 bytes per UTF-16 unit
    // An injected npm client sends every CR and LF as backslash + CR/LF: that is the size the server sees.
    const escaped = principal.injected && typeof value === 'string' ? (value.match(/[\r\n]/g)?.length ?? 0) : 0
    const bytes = Buffer.byteLength(value) + escaped
    if (bytes > maxValueBytes) {
      throw new SessionError(
        'ERR_TOO_LARGE',
        `the value for "${key}" is ${bytes} bytes as stored, over maxValueBytes (${maxValueBytes}); store less in the session`,
      )
    }
  }

  function checkTtl(ttl: number): void {
    if (!Number.isInteger(ttl) || ttl < 0)
      throw new TypeError(`tied-session: ttl must be a whole number of seconds (0 = never), got ${String(ttl)}`)
  }

  /** memcached reads an exptime over 30 days as an absolute Unix time, so send such TTLs as one. */
  const exptime = (ttl: number) => (ttl > THIRTY_DAYS ? Math.floor(Date.now() / 1000) + ttl : ttl)

  /**
   * Whether the principal server of `key` speaks the meta protocol: known without asking once it
   * answered (no async call per command); a server that cannot be reached rejects.
   */
  const speaksMeta = (key: string): boolean | Promise<boolean> => principal.knownMeta?.(key) ?? principal.supportsMeta(key)

  /** `key` as the principal holds it, with its version (`gets`). A `.then`, not an async function: one frame less per read. */
  function readPrincipal(key: string): Promise<Entry | undefined> {
    return principal.gets(key).then((item) => entryOf(key, item))
  }

  function entryOf(key: string, item: Item | undefined): Entry | undefined {
    if (item === undefined) return undefined
    if (item.flags < 0) {
      throw new SessionError(
        'ERR_CORRUPT',
        `"${key}" on memcached ${principal.serverOf(key)} was written with flags the injected client cannot read; delete it`,
      )
    }
    // the value and its flags as stored: the session layer tells Perl's forms apart by them
    const entry: Entry = { value: item.value }
    if (item.flags !== 0) entry.flags = item.flags
    if (item.cas !== undefined) entry.version = item.cas
    return entry
  }

  /** After a write to the principal: when the key expires is remembered, its new version told. */
  function written(key: string, opts: WriteOptions, result: WriteResult, cas: string | undefined): WriteResult {
    if (result !== 'exists') remember(key, result === 'stored' ? opts.ttl : undefined)
    if (cas !== undefined) opts.onVersion?.(cas)
    return result
  }

  /**
   * A write with `local`: write-through, the new version goes to local too, tagged with its cas,
   * so that the next read on this host is served there; without a cas (no meta commands) the old
   * copy is dropped. Concurrent writers may leave an older copy: it is never served (see
   * memcached-local.ts).
   */
  async function writeThroughLocal(copies: LocalCache, key: string, value: Value, opts: WriteOptions): Promise<WriteResult> {
    const { result, cas } = await writePrincipal(key, value, opts)
    written(key, opts, result, cas)
    if (result === 'stored' && cas !== undefined && (await copies.usable(key))) await copies.put(key, value, cas, opts.flags)
    else if (result !== 'exists') await dropLocal(key)
    return result
  }

  /** A read that may be served by `local` (see memcached-local.ts), else the principal's. */
  async function readThroughLocal(copies: LocalCache, key: string): Promise<Entry | undefined> {
    return (await copies.usable(key)) ? copies.get(key) : readPrincipal(key)
  }

  /**
   * Writes to the principal. Where its server speaks meta commands (memcached >= 1.6) it is an
   * `ms … c`, whose reply says the item's new cas: the caller learns its new version (so its next
   * `cas` needs no read first) and a local copy is tagged with it. The text protocol's set and cas
   * do not say it (twemproxy, memcached < 1.6, an injected client).
   */
  function writePrincipal(key: string, value: Value, opts: WriteOptions): Promise<{ result: WriteResult; cas?: string }> {
    const { mode, version } = opts
    // No version (a read without one) or not a cas unique: it cannot be the current one.
    if (mode === 'cas' && (version === undefined || !CAS_UNIQUE.test(version))) return Promise.resolve({ result: 'exists' })
    // a server known to speak meta: the wire client's promise and one `.then` (no async frame)
    const meta = speaksMeta(key)
    if (meta === true) return metaWrite(key, value, opts)
    return writeAsking(key, value, opts, meta)
  }

  function metaWrite(
    key: string,
    value: Value,
    { mode, ttl, version, flags = 0 }: WriteOptions,
  ): Promise<{ result: WriteResult; cas?: string }> {
    const opts: MetaSetOptions = { mode: mode === 'cas' ? 'set' : mode, ttl: exptime(ttl), flags }
    if (mode === 'cas') opts.cas = version!
    return principal.metaSet(key, value, opts).then((reply) => {
      // NS: an add of an existing item, a replace of a missing one
      const result: WriteResult = reply.result === 'not_stored' ? (mode === 'replace' ? 'not_found' : 'exists') : reply.result
      return reply.cas === undefined ? { result } : { result, cas: reply.cas }
    })
  }

  /** A write where the server's protocol is not known yet (`meta`: the answer to come), or has no meta commands. */
  async function writeAsking(
    key: string,
    value: Value,
    opts: WriteOptions,
    meta: boolean | Promise<boolean>,
  ): Promise<{ result: WriteResult; cas?: string }> {
    const { mode, ttl, version, flags = 0 } = opts
    if (await meta) return metaWrite(key, value, opts)
    if (mode === 'cas') {
      const reply = await principal.cas(key, value, version!, exptime(ttl), flags)
      return { result: reply === 'STORED' ? 'stored' : reply === 'NOT_FOUND' ? 'not_found' : 'exists' }
    }
    const reply = await principal.store(mode, key, value, exptime(ttl), flags)
    return { result: reply === 'STORED' ? 'stored' : mode === 'replace' ? 'not_found' : mode === 'add' ? 'exists' : unexpected(key, reply) }
  }

  const unexpected = (key: string, reply: string): never => {
    throw new SessionError('ERR_STORE_UNAVAILABLE', `memcached ${principal.serverOf(key)} answered ${reply} to a set of "${key}"`)
  }

  function remember(key: string, ttl: number | undefined): void {
    if (!local) return
    expiries.delete(key)
    if (ttl !== undefined) expiries.set(key, expiryTime(ttl))
    if (expiries.size > EXPIRY_MEMORY) expiries.delete(expiries.keys().next().value!)
  }

  /** Seconds a copy into local may live, so that it never outlives the key when its expiry is known; 0 = none. */
  const copyTtl = (key: string) => Math.min(localTtl, Math.floor(((expiries.get(key) ?? Infinity) - Date.now()) / 1000))

  /** Local failures cost speed, never an error. */
  const dropLocal = (key: string): Promise<void> | undefined => cache?.drop(key)

  async function* keys(prefix = ''): AsyncGenerator<string> {
    const listed = replicas ? new Set<string>() : undefined // with replicas each key is on several servers
    for (const server of principal.servers) {
      for (const key of await lister.keys(server)) {
        // a lock or a replicas marker, not data; or listed already
        if (key.endsWith(LOCK_SUFFIX) || (replicas && key.startsWith(MARKER_PREFIX)) || listed?.has(key)) continue
        listed?.add(key)
        if (key.startsWith(principal.namespace + prefix)) yield key.slice(principal.namespace.length)
      }
    }
  }

  /**
   * Removes the lock `lockKey` if it still holds `token`, and never another holder's: a plain
   * delete after the check would race a lock that expired meanwhile and was taken by another.
   *
   * With meta commands, `mg` reads the token and its cas, and `md … C<cas>` deletes only that
   * version. The text protocol has no conditional delete, but `cas` is conditional, and memcached
   * stores an item whose exptime is an absolute Unix time already past as expired at once: `cas`
   * at the version read, with exptime 2592001 (30 days and 1 s: read as a Unix time, in 1970),
   * removes the lock only if nobody took it since, and the next `add` succeeds at once. Not a
   * negative exptime, which twemproxy rejects by closing the connection.
   */
  async function unlock(lockKey: string, token: string): Promise<void> {
    if (await speaksMeta(lockKey)) {
      const found = await principal.metaGet(lockKey, { value: true, cas: true })
      if (found?.value !== token || found.cas === undefined) return // expired, or taken by another since
      await principal.metaDelete(lockKey, { cas: found.cas }) // EX or NF: taken by another since, or expired
      return
    }
    const found = await principal.gets(lockKey)
    if (found?.value !== token || found.cas === undefined) return
    await principal.cas(lockKey, 'released', found.cas, PAST) // EXISTS or NOT_FOUND: taken by another since, or expired
  }

  /** Locks whose `add` got no answer: removed once the server answers again (see memcached-late-locks.ts). */
  const lateLocks = new LateLocks(unlock, (key) => principal.serverOf(key))

  /**
   * Takes the lock of `key`: `add` of `key:lock` with a random token, tried again with jittered
   * backoff until `wait`. memcached counts whole seconds (a ttl of n lives n-1 to n s), so the
   * lock key is written with ttl + 1: it outlives its ttl by up to 1 s, never falls short of it.
   * `held()` reads the lock key: still ours while it holds our token.
   */
  async function lock(key: string, opts: LockOptions): Promise<LockRelease> {
    const lockKey = key + LOCK_SUFFIX
    checkKey(lockKey, [principal])
    const token = randomBytes(16).toString('hex')
    return pollLock(key, opts, async () => {
      let answer: string
      try {
        answer = await principal.store('add', lockKey, token, exptime(opts.ttl + 1))
      } catch (err) {
        lateLocks.add(lockKey, token) // an add that got no answer may be applied later
        throw err
      }
      if (answer !== 'STORED') return undefined
      let released: Promise<void> | undefined
      const release = () =>
        (released ??= (async () => {
          held.delete(release)
          await unlock(lockKey, token)
        })())
      held.add(release)
      const stillHeld = async () => released === undefined && (await principal.gets(lockKey))?.value === token
      return Object.assign(release, { held: stillHeld })
    })
  }

  /**
   * Reads and touches in one command where the server speaks meta (`mg <key> v c f T<ttl>`;
   * through a current local copy: the principal's `mg <key> c s T<ttl>`, which sends no value);
   * else `gets` and `touch` sent together.
   */
  async function getAndTouch(key: string, ttl: number): Promise<Entry | undefined> {
    checkKey(key)
    checkTtl(ttl)
    const expires = exptime(ttl)
    let entry: Entry | undefined
    if (cache !== undefined && (await cache.usable(key))) entry = await cache.get(key, expires)
    else if (await speaksMeta(key)) {
      const item = await principal.metaGet(key, { value: true, cas: true, flags: true, touch: expires })
      if (item !== undefined) {
        entry = { value: item.value ?? '' }
        if (item.flags) entry.flags = item.flags
        if (item.cas !== undefined) entry.version = item.cas
      }
    } else {
      const [read] = await Promise.all([readPrincipal(key), principal.touch(key, expires)])
      entry = read
    }
    const before = expiries.get(key)
    remember(key, entry === undefined ? undefined : ttl)
    // A checked copy is never served past its key (the principal is asked), but a trusted one
    // is dropped when the key may now end sooner than before, as touch does
    const sooner = before === undefined || (expiries.get(key) ?? 0) < before
    if (entry === undefined || (config.trustLocal && sooner)) await dropLocal(key)
    return entry
  }

  const store: MemcachedStore = {
    servers: principal.servers,
    local: local?.servers ?? [],

    // not an async function: a read of the principal is the wire client's promise and one `.then`
    get(key, opts): Promise<Entry | undefined> {
      try {
        checkKey(key)
      } catch (err) {
        return Promise.reject(err as Error)
      }
      if (replicas) return replicas.get(key)
      if (cache === undefined || opts?.consistent === true) return readPrincipal(key)
      return readThroughLocal(cache, key)
    },

    // not an async function: a write to the principal alone is the wire client's promise and `.then` steps
    write(key, value, opts): Promise<WriteResult> {
      try {
        checkKey(key)
        checkWrite(key, value, opts)
      } catch (err) {
        return Promise.reject(err as Error)
      }
      if (replicas) return replicas.write(key, value, opts)
      if (cache !== undefined) return writeThroughLocal(cache, key, value, opts)
      return writePrincipal(key, value, opts).then(({ result, cas }) => written(key, opts, result, cas))
    },

    /** With meta commands an `mg <key> s` (no value sent); else a `get`, as the text protocol cannot tell less. */
    async head(key) {
      checkKey(key)
      if (replicas) {
        // the newest copy decides (a tombstone is no key): read through the copies
        const entry = await replicas.get(key)
        return entry === undefined ? undefined : { size: Buffer.byteLength(entry.value) }
      }
      if (await speaksMeta(key)) {
        const found = await principal.metaGet(key, { size: true })
        return found?.size === undefined ? undefined : { size: found.size }
      }
      const item = await principal.get(key)
      return item === undefined ? undefined : { size: Buffer.byteLength(item.value) }
    },

    async delete(key) {
      checkKey(key)
      if (replicas) return replicas.delete(key)
      const existed = (await principal.delete(key)) === 'DELETED'
      remember(key, undefined)
      await dropLocal(key)
      return existed
    },

    async touch(key, ttl) {
      checkKey(key)
      checkTtl(ttl)
      if (replicas) return replicas.touch(key, ttl)
      const found = (await principal.touch(key, exptime(ttl))) === 'TOUCHED'
      remember(key, found ? ttl : undefined)
      // A local copy is never touched (extending it could keep a stale copy alive forever), but
      // dropped when the key is gone or now ends before the copy might.
      if (!found || (ttl !== 0 && ttl < localTtl)) await dropLocal(key)
      return found
    },

    // with replicas every copy is read (its stamp) and touched: get and touch, as a store without it
    ...(replicas ? {} : { getAndTouch }),

    ...(principal.servers.length > 0 ? { keys } : {}),

    lock,

    /** Also releases the locks this store still holds (within requestTimeout; else they expire by their ttl). */
    close: () =>
      (closing ??= (async () => {
        if (held.size > 0) await Promise.allSettled([...held].map((release) => release()))
        const sweepEnded = lateLocks.close()
        for (const pool of pools) pool.close(closedError()) // a look in flight fails now
        replicas?.close(closedError())
        lister.close()
        await sweepEnded
        onClose?.()
      })()),
  }
  return store
}
