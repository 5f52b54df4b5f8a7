/**
 * A stored value: text (kept as its UTF-8 bytes) or bytes (kept as they are, for formats that are
 * not UTF-8 text: Perl's Storable, gzip). A store gives back text as text where it can tell the
 * bytes are UTF-8 text (lossless either way) and bytes otherwise.
 */
export type Value = string | Buffer

/**
 * One stored value, its flags and the version it was read at (opaque; compare only for equality).
 * `flags` are memcached's client flags (Perl's Cache::Memcached: bit 0 Storable, bit 1 gzip),
 * kept by every store with the value; absent means 0.
 */
export interface Entry {
  value: Value
  flags?: number
  version?: string
}

/** A value as text: itself, or bytes read as Latin-1 (one character per byte, nothing lost). */
export function asText(value: Value): string {
  return typeof value === 'string' ? value : value.toString('latin1')
}

/** True when two stored values hold the same bytes. */
export function sameValue(a: Value | undefined, b: Value | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  if (typeof a === 'string' && typeof b === 'string') return a === b
  return Buffer.from(a as string).equals(Buffer.from(b as string))
}

/** How a write treats an existing key, as memcached's storage commands do. */
export type WriteMode = 'set' | 'add' | 'replace' | 'cas'

/** Options of {@link Store.write}. */
export interface WriteOptions {
  /** Seconds until the key expires; 0 = never. */
  ttl: number
  /**
   * `set` always stores; `add` only if the key is absent (else `exists`); `replace` only if
   * present (else `not_found`); `cas` only if present (else `not_found`) and still at
   * `version` (else `exists`).
   */
  mode: WriteMode
  /** The version a `cas` write expects, from {@link Store.get}. */
  version?: string
  /** Client flags kept with the value, 0 to 2^32-1 (memcached's; Perl's Cache::Memcached reads bit 0 as Storable, bit 1 as gzip). @default 0 */
  flags?: number
  /**
   * Told the key's new version when the write stored and the store knows it without another read
   * (memcached with meta commands: `ms … c`; the memory and file stores), before `write`
   * resolves. A store that cannot tell simply never calls it: the caller then reads the key again
   * before its next `cas` write, as the text protocol's `cas` (which does not say the new cas)
   * requires.
   */
  onVersion?: (version: string) => void
}

/** What {@link Store.head} tells of a key that exists. */
export interface Head {
  /** The value's size in bytes (as stored: UTF-8 for text). */
  size: number
}

/** What a write did. */
export type WriteResult = 'stored' | 'exists' | 'not_found'

/** Options of {@link Store.lock}. */
export interface LockOptions {
  /** Seconds a lock survives a holder that never releases it. */
  ttl: number
  /** Milliseconds to wait for the lock before `ERR_LOCKED`. */
  wait: number
  signal?: AbortSignal
}

/**
 * What {@link Store.lock} resolves to: the function that releases the lock (idempotent; once the
 * lock expired and another took it, a release leaves the new holder's lock alone), and, for
 * fencing, `held()`: whether the lock is still this holder's (not released, not expired, not
 * taken over by another). A session whose compare-and-swap write meets another writer's value
 * asks `held()` and, when it says false, fails with `ERR_LOCKED` instead of merging over the next
 * holder's write. `held()` is optional so that a plain release function still fits; the stores of
 * this package all have it.
 */
export type LockRelease = (() => Promise<void>) & {
  /** Whether the lock is still this holder's, as the store sees it now. */
  held?(): Promise<boolean>
}

/**
 * The contract every session store implements: a small key-value interface with versions.
 * A store knows nothing of sessions, proxies or serializers; keys are strings, values text or bytes
 * ({@link Value}) with their flags, given back byte for byte.
 * Failures are `SessionError`s: `ERR_STORE_UNAVAILABLE`, `ERR_INVALID_ID` (a key the store
 * cannot hold), `ERR_TOO_LARGE` (a value over the store's limit).
 */
export interface Store {
  /** The value and version of `key`, or undefined when absent or expired. `consistent` skips read caches. */
  get(key: string, opts?: { consistent?: boolean }): Promise<Entry | undefined>
  /** Writes `value` under `key` according to `opts.mode`. */
  write(key: string, value: Value, opts: WriteOptions): Promise<WriteResult>
  /**
   * Whether `key` exists, and its value's size in bytes, without sending the value (memcached:
   * `mg <key> s`); undefined when absent or expired. Read as `get` with `consistent: true` reads
   * (no read cache). Optional: without it, callers `get` the value to learn the same.
   */
  head?(key: string): Promise<Head | undefined>
  /** Removes `key`; false when it was absent. */
  delete(key: string): Promise<boolean>
  /** Sets a new TTL (seconds, 0 = never) on `key`; false when it was absent. */
  touch(key: string, ttl: number): Promise<boolean>
  /**
   * Optional: `get` and `touch` in one step, for sliding expiry (`rolling`): the entry as `get`
   * reads it, and the key's TTL set as `touch` sets it. Without it, a rolling tie sends a get and a
   * touch together.
   */
  getAndTouch?(key: string, ttl: number): Promise<Entry | undefined>
  /**
   * Takes an exclusive lock on `key`, a lease of `opts.ttl` s counted from when it resolves;
   * resolves to the function that releases it, which may tell whether the lock is still held
   * ({@link LockRelease}).
   */
  lock?(key: string, opts: LockOptions): Promise<LockRelease>
  /** The live keys that start with `prefix`, in no particular order. */
  keys?(prefix?: string): AsyncIterable<string>
  /** Ends every handle and timer of the store. */
  close(): Promise<void>
}

/** Milliseconds since the epoch at which a TTL given now ends; Infinity for 0 (never). */
export function expiryTime(ttl: number, now = Date.now()): number {
  return ttl === 0 ? Number.POSITIVE_INFINITY : now + ttl * 1000
}
