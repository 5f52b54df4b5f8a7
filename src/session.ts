/**
 * One tied session: its id, the data under the proxy, the top-level keys changed since the
 * last write, the version read from the store, and the flush that writes them back.
 */
import { SessionError } from './errors.js'
import { newId } from './ids.js'
import { addToIndex, md5Hex, readList, reindex, removeFromIndex, type AddOptions } from './principal.js'
import { put, type Serializer } from './serializers.js'
import type { Store, WriteOptions } from './stores/store.js'
import { ID_FIELD, track, type TrackerHooks } from './tracker.js'

type Data = Record<string, unknown>

/** What a session needs to know about its store and options. */
export interface SessionConfig {
  store: Store
  namespace: string
  /** seconds, 0 = never */
  ttl: number
  serializer: Serializer
  autoSave: boolean
  onError: ((error: unknown, session: object) => void) | undefined
  /** The field naming the user, for the reverse index; maxSessions evicts the user's oldest. */
  principal: { field: string; maxSessions: number | undefined } | undefined
  /** Takes the exclusive lock of a key (lock: 'exclusive'). */
  acquire: ((key: string) => Promise<() => Promise<void>>) | undefined
}

/** The user id in a principal field: a non-empty string or a finite number, else none. */
export function uidOf(value: unknown): string | undefined {
  if (typeof value === 'string' && value !== '') return value
  if (typeof value === 'number' && Number.isFinite(value)) return String(value)
  return undefined
}

/** Sets (or removes) `<field>_MD5` in `data` from the uid in `field`; returns the md5 field's name when it changed. */
export function stampDigest(data: Record<string, unknown>, field: string): string | undefined {
  const uid = uidOf(data[field])
  const name = `${field}_MD5`
  if (uid !== undefined) {
    const digest = md5Hex(uid)
    if (data[name] === digest) return undefined
    data[name] = digest
    return name
  }
  if (!Object.hasOwn(data, name)) return undefined
  delete data[name]
  return name
}

/** Compare-and-swap rounds before a save gives up with ERR_CONFLICT. */
const MAX_TRIES = 10
const ABSENT = '\u0000absent'

/** The error for a session that is not (or no longer) in the store. */
export function notFound(id: string, detail = 'it does not exist or has expired'): SessionError {
  return new SessionError('ERR_SESSION_NOT_FOUND', `session ${id} not found: ${detail}; tie a new session (id undefined)`)
}

/**
 * Writes `data` under a new id with `add`, so that a colliding id is never overwritten (a new id
 * is tried then, at most 5 in all). Returns the id and the text written.
 */
export async function bookNewId(config: SessionConfig, data: Data): Promise<{ id: string; text: string }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const id = newId()
    const text = config.serializer.stringify({ ...data, [ID_FIELD]: id })
    const result = await config.store.write(config.namespace + id, text, { ttl: config.ttl, mode: 'add' })
    if (result === 'stored') return { id, text }
  }
  throw new SessionError('ERR_CONFLICT', 'could not book a new session id after 5 tries; is the store answering add correctly?')
}

/** Parses stored text into session data, or ERR_CORRUPT. */
export function parseData(serializer: Serializer, text: string, id: string): Data {
  let data: unknown
  try {
    data = serializer.parse(text)
  } catch (cause) {
    throw new SessionError(
      'ERR_CORRUPT',
      `session ${id} holds data the ${serializer.name} serializer cannot read; destroy it or fix the serializer`,
      { cause },
    )
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new SessionError('ERR_CORRUPT', `session ${id} does not hold an object; destroy it`)
  }
  return data as Data
}

export class Session implements TrackerHooks {
  id: string
  readonly proxy: object
  private readonly data: Data
  private version: string | undefined
  /** false for a new updateOnly session until its first write */
  private stored: boolean
  /**
   * The stored text, kept only while the version is unknown (a read served by `local`, or after
   * a save): a save then re-reads, and needs no merge when the text is still ours.
   */
  private text: string | undefined
  private readonly changed = new Set<string>()
  /** keys whose raw value was handed out untracked, with the text they had at the last write */
  private exposed: Map<string, string> | undefined
  private state: 'open' | 'untied' | 'destroyed' = 'open'
  private timer: NodeJS.Immediate | undefined
  private flushing: Promise<void> | undefined
  private pendingError: unknown
  private unlock: (() => Promise<void>) | undefined
  /** The uid the reverse index lists this session under, and when this tie last wrote it (ms). */
  private indexed: { uid: string; at: number | undefined } | undefined

  constructor(
    readonly config: SessionConfig,
    id: string,
    data: Data,
    loaded: { version: string | undefined; text: string | undefined; stored: boolean },
  ) {
    this.id = id
    this.data = data
    data[ID_FIELD] = id
    this.version = loaded.version
    this.text = loaded.version === undefined ? loaded.text : undefined
    this.stored = loaded.stored
    const field = config.principal?.field
    const uid = field === undefined ? undefined : uidOf(data[field])
    this.indexed = uid === undefined ? undefined : { uid, at: undefined }
    this.proxy = track(data, this)
  }

  /** Tracker hook: top-level `key` changed. */
  change(key: string): void {
    this.changed.add(key)
    this.schedule()
  }

  /** Tracker hook: the raw value under `key` was handed out untracked. */
  expose(key: string): void {
    const exposed = (this.exposed ??= new Map())
    if (!exposed.has(key)) exposed.set(key, this.textOf(key))
    this.schedule()
  }

  /** Tracker hook: `await using` support. */
  dispose(): Promise<void> {
    return this.untie()
  }

  get key(): string {
    return this.config.namespace + this.id
  }

  get open(): boolean {
    return this.state === 'open'
  }

  /** Keeps the release of this session's exclusive lock, run when it is untied or destroyed. */
  holdLock(release: () => Promise<void>): void {
    this.unlock = release
  }

  /** Writes pending changes now; throws what went wrong, including a failed automatic flush. */
  async save(): Promise<void> {
    this.cancel()
    let error: unknown
    try {
      await this.flush()
    } catch (err) {
      error = err
    }
    this.throwPending(error)
  }

  /** Writes pending changes and releases the session; later writes to it throw. */
  async untie(): Promise<void> {
    this.cancel()
    if (this.state !== 'open') return
    let error: unknown
    try {
      await this.flush()
    } catch (err) {
      error = err
    }
    this.state = 'untied'
    if (this.unlock !== undefined) await this.release()
    this.throwPending(error)
  }

  /** Removes the session from the store now, and from its user's index, and releases it. */
  async destroy(): Promise<void> {
    this.cancel()
    await this.settle()
    this.changed.clear()
    this.pendingError = undefined
    try {
      if (this.stored) await this.config.store.delete(this.key)
      if (this.indexed !== undefined) await removeFromIndex(this.place(), md5Hex(this.indexed.uid), this.id)
      this.indexed = undefined
    } finally {
      // the lock is released on every path; a session whose delete failed is released too
      this.state = 'destroyed'
      await this.release()
    }
  }

  /** Reads the session again from the store (skipping read caches); unsaved changes are dropped. */
  async reload(): Promise<void> {
    this.cancel()
    await this.settle()
    if (!this.stored) {
      this.replaceAll({})
      this.changed.clear()
      return
    }
    const entry = await this.config.store.get(this.key, { consistent: true })
    if (entry === undefined) throw notFound(this.id)
    this.replaceAll(parseData(this.config.serializer, entry.value, this.id))
    this.version = entry.version
    this.text = entry.version === undefined ? entry.value : undefined
    this.changed.clear()
  }

  /** Moves the data to a new id (written at once unless never stored) and deletes the old one. */
  async regenerate(): Promise<void> {
    this.writable()
    this.cancel()
    await this.settle()
    const oldKey = this.key
    const oldId = this.id
    if (!this.stored) {
      this.setId(newId())
      return
    }
    this.validateExposed()
    const { id, text } = await bookNewId(this.config, this.data)
    // nobody else knows the new id yet: its lock is taken once it is booked, as for a new session
    const unlock = await this.config.acquire?.(this.config.namespace + id)
    this.setId(id)
    this.text = text
    this.version = undefined
    this.changed.clear()
    this.resetExposed()
    if (unlock !== undefined) {
      await this.release()
      this.unlock = unlock
    }
    await this.config.store.delete(oldKey)
    if (this.indexed !== undefined) {
      const digest = md5Hex(this.indexed.uid)
      await addToIndex(this.place(), digest, { id: this.id, ttl: this.config.ttl, maxSessions: this.config.principal?.maxSessions })
      this.indexed.at = Date.now()
      await removeFromIndex(this.place(), digest, oldId)
    }
  }

  /** Tracker hook: throws once the session takes no writes. */
  writable(): void {
    if (this.state !== 'open') throw new TypeError(`tied-session: session ${this.id} is ${this.state}; tie it again to change it`)
  }

  private setId(id: string): void {
    this.id = id
    this.data[ID_FIELD] = id
  }

  /** Tracker hook: the stored copy of a written value. */
  copy(value: unknown, path: string): unknown {
    const { serializer } = this.config
    if (serializer.copy) return serializer.copy(value, path)
    try {
      return serializer.parse(serializer.stringify(value))
    } catch (cause) {
      throw new TypeError(`tied-session: cannot store the value at ${path} with the ${serializer.name} serializer`, { cause })
    }
  }

  private textOf(key: string): string {
    return Object.hasOwn(this.data, key) ? this.config.serializer.stringify(this.data[key]) : ABSENT
  }

  private schedule(): void {
    if (!this.config.autoSave || this.timer !== undefined || this.state !== 'open') return
    // the writes of one synchronous burst become one store write
    this.timer = setImmediate(() => {
      this.timer = undefined
      this.flush().catch((err: unknown) => this.fail(err))
    })
  }

  private cancel(): void {
    if (this.timer !== undefined) clearImmediate(this.timer)
    this.timer = undefined
  }

  private fail(error: unknown): void {
    this.pendingError ??= error
    try {
      this.config.onError?.(error, this.proxy)
    } catch {
      // an onError that throws must not turn a kept error into an uncaught one
    }
  }

  private throwPending(error: unknown): void {
    const pending = this.pendingError
    this.pendingError = undefined
    if (pending !== undefined) throw pending
    if (error !== undefined) throw error
  }

  private async settle(): Promise<void> {
    while (this.flushing) await this.flushing.catch(() => undefined)
  }

  private async release(): Promise<void> {
    const unlock = this.unlock
    this.unlock = undefined
    await unlock?.()
  }

  private place() {
    return { store: this.config.store, namespace: this.config.namespace }
  }

  /**
   * Keeps the user's reverse index in step after a write: moves the entry when the uid changed,
   * drops it when the uid is gone, and refreshes it on the first write of each tie (its expiry
   * follows the session's) or when half the TTL has passed since this tie refreshed it.
   */
  private async syncIndex(listRead: AddOptions['listRead']): Promise<void> {
    const principal = this.config.principal
    if (principal === undefined) return
    const uid = uidOf(this.data[principal.field])
    if (this.indexFresh(uid)) return
    const { ttl } = this.config
    await reindex(this.place(), this.indexed?.uid, uid, { id: this.id, ttl, maxSessions: principal.maxSessions, listRead })
    this.indexed = uid === undefined ? undefined : { uid, at: Date.now() }
  }

  /** True when this tie refreshed `uid`'s index entry less than half a TTL ago. */
  private indexFresh(uid: string | undefined): boolean {
    const { indexed } = this
    const { ttl } = this.config
    return uid !== undefined && indexed?.uid === uid && indexed.at !== undefined && (ttl === 0 || Date.now() - indexed.at < ttl * 500)
  }

  /**
   * When this save will refresh a user's index entry: that user's list, read now so that the read
   * travels with the session's own write (one round trip fewer; a stale read only costs a retry).
   */
  private readListAhead(): AddOptions['listRead'] {
    const field = this.config.principal?.field
    const uid = field === undefined ? undefined : uidOf(this.data[field])
    if (uid === undefined || this.indexFresh(uid)) return undefined
    const digest = md5Hex(uid)
    const entry = readList(this.place(), digest)
    entry.catch(() => {}) // unused when the session's write fails
    return { digest, entry }
  }

  /** The top-level keys changed since the last write, including exposed values that differ now. */
  private dirty(): Set<string> {
    const dirty = new Set(this.changed)
    for (const [key, text] of this.exposed ?? []) if (this.textOf(key) !== text) dirty.add(key)
    return dirty
  }

  /** An exposed value was changed without passing a trap: check it now, naming the path. */
  private validateExposed(): void {
    for (const key of this.exposed?.keys() ?? []) if (Object.hasOwn(this.data, key)) this.copy(this.data[key], key)
  }

  private resetExposed(): void {
    const exposed = this.exposed
    for (const key of exposed?.keys() ?? []) exposed!.set(key, this.textOf(key))
  }

  private async flush(): Promise<void> {
    if (this.flushing) await this.settle()
    if (this.state !== 'open') return
    const dirty = this.dirty()
    if (dirty.size === 0) return
    this.changed.clear()
    this.flushing = this.write(dirty)
    try {
      await this.flushing
    } catch (err) {
      for (const key of dirty) this.changed.add(key)
      throw err
    } finally {
      this.flushing = undefined
    }
  }

  /**
   * Writes the data with the version read at load (compare-and-swap). When another writer came
   * first, re-reads from the store's principal, keeps their changes to other keys, re-applies
   * ours and tries again, a bounded number of times.
   */
  private async write(dirty: Set<string>): Promise<void> {
    const { store, ttl, serializer, principal } = this.config
    this.validateExposed()
    const listRead = this.readListAhead()
    for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
      if (principal !== undefined) {
        const stamped = stampDigest(this.data, principal.field)
        if (stamped !== undefined) dirty.add(stamped)
      }
      const text = serializer.stringify(this.data)
      if (!this.stored || this.version !== undefined) {
        const opts: WriteOptions = this.stored ? { ttl, mode: 'cas', version: this.version as string } : { ttl, mode: 'add' }
        const result = await store.write(this.key, text, opts)
        if (result === 'stored') {
          this.stored = true
          this.text = text
          // memcached does not say the new cas value; the next save reads it again
          this.version = undefined
          this.resetExposed()
          if (this.config.principal !== undefined) await this.syncIndex(listRead)
          return
        }
        if (result === 'not_found') throw notFound(this.id, 'it was destroyed or expired while tied, and is not written back')
      }
      const entry = await store.get(this.key, { consistent: true })
      if (entry === undefined) {
        if (this.stored) throw notFound(this.id, 'it was destroyed or expired while tied, and is not written back')
        continue
      }
      this.stored = true
      this.version = entry.version
      if (entry.value !== this.text) this.merge(entry.value, dirty)
      this.text = entry.value
    }
    throw new SessionError('ERR_CONFLICT', `session ${this.id} kept changing under this save (${MAX_TRIES} tries); save again`)
  }

  /** Takes another writer's values for every key this session did not change. */
  private merge(text: string, dirty: Set<string>): void {
    const theirs = parseData(this.config.serializer, text, this.id)
    const keys = new Set([...Object.keys(this.data), ...Object.keys(theirs)])
    for (const key of keys) {
      if (key === ID_FIELD || dirty.has(key) || this.changed.has(key)) continue
      const exposedText = this.exposed?.get(key)
      if (exposedText !== undefined && exposedText !== this.textOf(key)) continue
      if (!Object.hasOwn(theirs, key)) {
        delete this.data[key]
      } else if (!Object.hasOwn(this.data, key) || this.textOf(key) !== this.config.serializer.stringify(theirs[key])) {
        put(this.data, key, theirs[key])
      }
      if (exposedText !== undefined) this.exposed!.set(key, this.textOf(key))
    }
  }

  private replaceAll(data: Data): void {
    for (const key of Object.keys(this.data)) if (key !== ID_FIELD) delete this.data[key]
    for (const key of Object.keys(data)) {
      if (key !== ID_FIELD) put(this.data, key, data[key])
    }
    this.exposed = undefined
  }
}
