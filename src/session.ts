/**
 * One tied session: its id, the data under the proxy, the top-level keys changed since the
 * last write, the version read from the store, and the flush that writes them back.
 *
 * What the object shows is what a save stores. Changes that pass a trap mark their top-level key
 * changed. Changes that cannot pass one, made through objects the caller assigned and still holds
 * (they stay live: see Serializer.adopt) or inside a Date, Map or Set the session handed out, are
 * found by comparing those "loose" keys with the text they had when last written, at every flush.
 */
import { backoff } from './backoff.js'
import { SessionError } from './errors.js'
import { newId } from './ids.js'
import type { Lease } from './lease.js'
import { stampCreation, ttlNow, UTIME_FIELD } from './lifetime.js'
import { noteAscii } from './ascii.js'
import { forget, memberwise, spliced, wrote, type Known, type Layout } from './json-layout.js'
import { LooseKeys } from './loose.js'
import { BaseCopy, MergeBases, copyJson, type BaseText } from './merge-bases.js'
import { containers, mergeChanged, takeTheirs, reconcile } from './merge.js'
import type { AddOptions } from './principal.js'
import { SessionIndex } from './session-index.js'
import { schedule, seen, unseenFailure } from './autosave.js'
import { json } from './json.js'
import { checkDepth, viewTarget, type Serializer } from './serializers.js'
import { formFor, readForm, toStored, type StoredForm } from './stored-form.js'
import { bookNewId, notFound, parseData, releasing } from './stored.js'
import type { Store, WriteOptions, WriteResult } from './stores/store.js'
import { ID_FIELD, track, type TrackerHooks } from './tracker.js'

type Data = Record<string, unknown>

/** What a session needs to know about its store and options. */
export interface SessionConfig {
  store: Store
  namespace: string
  /** seconds, 0 = never */
  ttl: number
  /** Every tie extends the TTL (sliding expiry). */
  rolling: boolean
  /** Seconds from creation (`_utime`) after which the session is gone; 0 = no limit. */
  maxLifetime: number
  serializer: Serializer
  autoSave: boolean
  onError: ((error: unknown, session: object) => void) | undefined
  /** The field naming the user, for the reverse index; maxSessions evicts the user's oldest. */
  principal: { field: string; maxSessions: number | undefined } | undefined
  /** Takes the exclusive lock of a key (lock: 'exclusive') as a lease. */
  acquire: ((key: string) => Promise<Lease>) | undefined
}

/** What the attempts of one write share: the user's list, read with the first attempt. */
type WriteRound = { listRead?: AddOptions['listRead'] }

/** Why an open session refuses writes (see Session.refusing). */
type Refusal = 'being untied' | 'being destroyed' | 'being regenerated' | 'being reloaded'

/** What a write made while the session refuses writes is told to do instead. */
const INSTEAD: Record<Refusal, string> = {
  'being untied': 'tie it again to change it',
  'being destroyed': 'tie it again to change it',
  'being regenerated': 'await regenerate(s) before changing it',
  'being reloaded': 'await reload(s) before changing it',
}

/** Compare-and-swap rounds before a save gives up with ERR_CONFLICT. */
const MAX_TRIES = 10

export class Session implements TrackerHooks {
  id: string
  readonly proxy: object
  private readonly data: Data
  private readonly detach: (value: unknown) => void
  private version: string | undefined
  /** false for a new updateOnly session until its first write */
  private stored: boolean
  /**
   * The stored text, kept only while the version is unknown (a read served by `local`, or a save
   * whose store does not tell the new version): a save then re-reads, and needs no merge when the
   * text is still ours.
   */
  private text: string | undefined
  /** The form the session is kept in: as it was read (Perl's Storable, gzip, JSON), else the configured serializer's. */
  private form: StoredForm
  private changed = new Set<string>()
  /** Each changed key's stored text before its first change: the bases of a merge. */
  private readonly bases = new MergeBases()
  /** keys that can change without passing a trap; made on first use */
  private loose: LooseKeys | undefined
  private state: 'open' | 'untied' | 'destroyed' = 'open'
  /**
   * Why writes throw while the session is still open: untie or destroy was called (from then on
   * writes throw, as they do once it is done: a write accepted while the last flush is in flight
   * would be dropped when it ends), or a regenerate or reload runs (see {@link alone}).
   */
  private refusing: Refusal | undefined
  /** An automatic save is scheduled (autosave.ts) and has not started. */
  due = false
  private flushing: Promise<void> | undefined
  private pendingError: unknown
  /** The exclusive lock held from tie to untie (lock: 'exclusive'); writes check it first (a fence). */
  private lease: Lease | undefined
  /** The uid the user index lists this session under (undefined: none), and whether its last index write failed. */
  private readonly index: SessionIndex

  constructor(
    readonly config: SessionConfig,
    id: string,
    data: Data,
    loaded: { version: string | undefined; text: string | undefined; stored: boolean; form?: StoredForm; known?: Known | undefined },
  ) {
    this.id = id
    this.data = data
    data[ID_FIELD] = id
    this.version = loaded.version
    this.text = loaded.version === undefined ? loaded.text : undefined
    this.stored = loaded.stored
    this.form = loaded.form ?? formFor(config.serializer)
    this.hold(loaded.text, loaded.known)
    this.index = new SessionIndex(
      { place: { store: config.store, namespace: config.namespace }, ttl: config.ttl, principal: config.principal },
      data,
    )
    const { proxy, detach } = track(data, this)
    this.proxy = proxy
    this.detach = detach
  }

  /** Tracker hook: top-level `key` changed. */
  change(key: string): void {
    this.changed.add(key)
    this.schedule()
  }

  /** Tracker hook: the raw value under `key` was handed out untracked. */
  loosen(key: string): void {
    this.looseKeys().add(key, this.changed.has(key))
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

  /** Open, untied or destroyed, and whether the store holds it (false for an updateOnly session never saved). */
  status(): { state: 'open' | 'untied' | 'destroyed'; stored: boolean } {
    return { state: this.state, stored: this.stored }
  }

  /** Keeps this session's exclusive lock, released when it is untied or destroyed. */
  holdLock(lease: Lease): void {
    this.lease = lease
  }

  /** Writes pending changes now; throws what went wrong, including a failed automatic flush. */
  async save(): Promise<void> {
    this.cancel()
    let error: unknown
    try {
      const flushing = this.startFlush()
      if (flushing !== undefined) await flushing
    } catch (err) {
      error = err
    }
    this.throwPending(error)
  }

  /**
   * Writes pending changes and releases the session; later writes to it throw. Not an async
   * function: a read-only untie awaits nothing, a writing one is its flush and one `.then`.
   */
  untie(): Promise<void> {
    this.cancel()
    if (this.state !== 'open') return Promise.resolve()
    if (this.refusing !== 'being destroyed') this.refusing = 'being untied'
    let flushing: Promise<void> | undefined
    try {
      flushing = this.startFlush()
    } catch (err) {
      return this.untied(err) ?? Promise.resolve()
    }
    if (flushing === undefined) return this.untied(undefined) ?? Promise.resolve()
    return flushing.then(
      () => this.untied(undefined),
      (err: unknown) => this.untied(err),
    )
  }

  /** The end of an untie, after its last flush (`error`: what the flush threw): a promise only when there is a lock to release. */
  private untied(error: unknown): Promise<void> | undefined {
    this.state = 'untied'
    try {
      this.throwPending(error)
    } catch (err) {
      return releasing(err, () => this.release()).then((thrown) => {
        throw thrown
      })
    }
    return this.lease === undefined ? undefined : this.release()
  }

  /** Removes the session from the store now, and from its user's index, and releases it. */
  async destroy(): Promise<void> {
    this.cancel()
    this.refusing = 'being destroyed'
    await this.settle()
    this.changed.clear()
    this.pendingError = undefined
    try {
      this.lease?.assertFresh()
      forget(this.config.store, this.key)
      if (this.stored) await this.config.store.delete(this.key)
      await this.index.remove(this.id)
    } catch (err) {
      // the lock is released on every path; a session whose delete failed is released too
      this.state = 'destroyed'
      throw await releasing(err, () => this.release())
    }
    this.state = 'destroyed'
    await this.release()
  }

  /**
   * Reads the session again from the store (skipping read caches); unsaved changes are dropped.
   * Objects stay in place where the stored data has the same kind of object at the same path.
   */
  reload(): Promise<void> {
    return this.alone('being reloaded', () => this.readAgain())
  }

  private async readAgain(): Promise<void> {
    let next: Data = {}
    let entry
    let text: string | undefined
    if (this.stored) {
      entry = await this.config.store.get(this.key, { consistent: true })
      if (entry === undefined) throw notFound(this.id)
      const read = readForm(this.config.serializer, entry)
      next = parseData(read.form.serializer, read.text, this.id)
      this.form = read.form
      text = read.text
    }
    next[ID_FIELD] = this.id
    reconcile(this.data, next, this.detach)
    this.version = entry?.version
    this.text = entry !== undefined && entry.version === undefined ? text : undefined
    this.changed.clear()
    this.bases.clear()
    this.hold(text)
    if (this.config.principal !== undefined) this.index.loaded(this.data)
    this.loose?.stored(this.loose.keys())
  }

  /** Moves the data to a new id (written at once unless never stored) and deletes the old one. */
  async regenerate(): Promise<void> {
    this.writable()
    await this.alone('being regenerated', () => this.move())
  }

  /**
   * Runs `work` alone, once the flush in flight is done: writes throw until it ends (a write made
   * meanwhile would miss the text a regenerate books, or be dropped by a reload), and save,
   * untie, destroy and reload called meanwhile wait for it, as for a flush.
   */
  private async alone(reason: 'being regenerated' | 'being reloaded', work: () => Promise<void>): Promise<void> {
    this.cancel()
    // (an untie or destroy under way keeps refusing writes after it)
    const mine = this.refusing === undefined
    if (mine) this.refusing = reason
    try {
      await this.settle()
      const running = work()
      // settles either way: a failure is the caller's, through `running`
      const done = () => {
        if (this.flushing === flushing) this.flushing = undefined
      }
      const flushing: Promise<void> = running.then(done, done)
      this.flushing = flushing
      await running
    } finally {
      if (mine && this.refusing === reason) this.refusing = undefined
    }
  }

  private async move(): Promise<void> {
    const oldKey = this.key
    const oldId = this.id
    this.lease?.assertFresh()
    if (!this.stored) {
      this.setId(newId())
      return
    }
    this.loose?.adopt()
    // the one write path: the new id is written with the index stamps, then indexed (a login
    // moves to its new id, and the old id leaves its user's list)
    const plan = this.index.prepare(this.data, this.changed, true)
    const texts = this.loose?.snapshot()
    // nobody else knows the new id yet: its lock is taken before it is booked
    const { id, text, lease } = await bookNewId(this.config, this.data, this.config.acquire)
    this.setId(id)
    this.text = text
    this.version = undefined
    this.changed.clear()
    this.bases.clear()
    this.hold(text)
    if (texts) this.loose!.settle(texts)
    if (lease !== undefined) {
      const old = this.lease
      this.lease = lease
      await old?.unlock()
    }
    forget(this.config.store, oldKey)
    await this.config.store.delete(oldKey)
    await this.index.write(this.id, plan, oldId, undefined)
  }

  /**
   * After a load: a session past its maxLifetime is deleted (it is gone whatever its activity)
   * and ERR_SESSION_NOT_FOUND; a rolling tie near the end of its lifetime is touched again, so
   * that the store drops it then.
   */
  async checkLifetime(): Promise<void> {
    let ttl: number
    try {
      ttl = ttlNow(this.config, this.data, this.id)
    } catch (err) {
      this.state = 'untied'
      // Tidying only: every tie refuses the session from now on whether or not this delete lands,
      // the store drops it at its TTL (which writes and rolling touches capped at the lifetime),
      // and a user's list prunes it once it is gone. The caller is told ERR_SESSION_NOT_FOUND.
      await this.config.store.delete(this.key).catch(() => undefined)
      throw err
    }
    if (this.config.rolling && ttl !== this.config.ttl) await this.config.store.touch(this.key, ttl)
  }

  /** After a rolling tie extended the session's TTL: its user index is kept alive too. */
  async rolled(): Promise<void> {
    await this.index.keepAlive(this.id, this.data)
  }

  /** A deep plain copy of the data as it is now. */
  snapshot(): Data {
    return this.copy(this.data, '') as Data
  }

  /** Tracker hook: throws once the session takes no writes; keeps `top`'s stored text before its first change. */
  writable(top?: string): void {
    if (this.state !== 'open') throw new TypeError(`tied-session: session ${this.id} is ${this.state}; tie it again to change it`)
    if (this.refusing !== undefined) throw new TypeError(`tied-session: session ${this.id} is ${this.refusing}; ${INSTEAD[this.refusing]}`)
    if (top !== undefined && this.stored && this.bases.needs(top)) this.bases.keep(top, this.storedText(top))
  }

  /**
   * `top`'s stored value, before a change: a loose key's text is known; a key unchanged since the
   * session's source text holds that text's value; another's is its value now, a copy of it for
   * JSON (plain data, and a copy is cheaper than its text), else its text.
   */
  private storedText(top: string): BaseText {
    const loose = this.loose?.storedText(top)
    if (loose !== undefined || this.loose?.has(top) === true) return loose
    if (!Object.hasOwn(this.data, top)) return null
    if (this.bases.source !== undefined && !this.changed.has(top)) return this.bases.source
    if (this.form.serializer === json) return new BaseCopy(copyJson(this.data[top]))
    try {
      return this.form.serializer.stringify(this.data[top])
    } catch {
      return undefined // a value its serializer cannot write alone: merged as a whole
    }
  }

  /**
   * `text` (the data's whole text, in the session's form) is what every key now holds: the base of
   * their first changes, for `json` sessions (MergeBases.hold), and the source of the next save's
   * text when this process knows how it is laid out (`known`, json-layout.ts).
   */
  private hold(text: string | undefined, known?: Known): void {
    this.bases.hold(this.form.serializer === json ? text : undefined, known)
  }

  private setId(id: string): void {
    this.id = id
    this.data[ID_FIELD] = id
  }

  /** Tracker hook: the value to store for a write. The caller's own objects are adopted, and their key turns loose. */
  place(value: unknown, at: () => string, top: string, depth: number, replaced?: unknown): unknown {
    if (typeof value !== 'object' || value === null) {
      // a leaf: its path is spelled out only for the error (copying a leaf has no side effect)
      try {
        return this.copy(value, '')
      } catch {
        return this.copy(value, at())
      }
    }
    const { serializer } = this.form
    const path = at()
    checkDepth(value, path, depth)
    if (serializer.adopt !== undefined) {
      // objects of the replaced value that the new one contains are moved, once each, not copied
      let movable: Set<object> | undefined
      const move = (target: object) => (movable ??= containers(replaced)).delete(target)
      const placed = serializer.adopt(value, path, move)
      if (viewTarget(value) === undefined) this.looseKeys().add(top, true)
      return placed
    }
    return this.copy(value, path)
  }

  /** The stored copy of a value (the serializer's copy, or a round trip through it). */
  private copy(value: unknown, path: string): unknown {
    const { serializer } = this.form
    if (serializer.copy) return serializer.copy(value, path)
    try {
      return serializer.parse(serializer.stringify(value))
    } catch (cause) {
      throw new TypeError(`tied-session: cannot store the value at ${path} with the ${serializer.name} serializer`, { cause })
    }
  }

  private looseKeys(): LooseKeys {
    return (this.loose ??= new LooseKeys(this.data, this.form.serializer))
  }

  private schedule(): void {
    if (!this.config.autoSave || this.due || this.state !== 'open') return
    // the writes of one synchronous burst become one store write
    this.due = true
    schedule(this)
  }

  /** The scheduled automatic flush starts (autosave.ts); its failure is kept, as {@link fail} says. */
  async runScheduled(): Promise<void> {
    this.due = false
    try {
      await this.startFlush()
    } catch (err) {
      this.fail(err)
    }
  }

  /** Runs a scheduled automatic flush now (closeStores); a failure is kept as the automatic flush's would be. */
  async flushScheduled(): Promise<void> {
    this.cancel()
    try {
      await this.startFlush()
    } catch (err) {
      this.fail(err)
    }
  }

  private cancel(): void {
    this.due = false
  }

  /** A failed automatic flush: kept for the next save/untie and given to onError; without onError, reported at exit if never thrown. */
  private fail(error: unknown): void {
    this.pendingError ??= error
    if (this.config.onError === undefined) {
      unseenFailure(this)
      return
    }
    try {
      this.config.onError(error, this.proxy)
    } catch {
      // an onError that throws must not turn a kept error into an uncaught one
    }
  }

  private throwPending(error: unknown): void {
    const pending = this.pendingError
    this.pendingError = undefined
    seen(this)
    if (pending !== undefined) throw pending
    if (error !== undefined) throw error
  }

  /** The failed automatic flush no one has seen yet, for the exit report. */
  get unseenError(): unknown {
    return this.pendingError
  }

  private async settle(): Promise<void> {
    while (this.flushing) await this.flushing.catch(() => undefined)
  }

  private async release(): Promise<void> {
    const lease = this.lease
    this.lease = undefined
    await lease?.unlock()
  }

  /**
   * Starts writing the pending changes: the write's promise, or undefined when there is nothing
   * to write. Not an async function: a tie + change + untie suspends once less (measured), and a
   * read-only untie not at all. May throw (a loose value that cannot be stored).
   */
  private startFlush(): Promise<void> | undefined {
    if (this.flushing) return this.settle().then(() => this.startFlush())
    if (this.state !== 'open') return undefined
    this.loose?.adopt()
    // the top-level keys changed since the last write, with the loose keys whose text differs now:
    // the set itself is handed to the write (a new one takes the changes made meanwhile)
    const dirty = this.changed
    this.loose?.collect(dirty)
    if (dirty.size === 0 && !this.index.failed) return undefined
    this.changed = new Set()
    const flushing: Promise<void> = this.write(dirty).then(
      () => {
        if (this.flushing === flushing) this.flushing = undefined
      },
      (err: unknown) => {
        if (this.flushing === flushing) this.flushing = undefined
        for (const key of dirty) this.changed.add(key)
        throw err
      },
    )
    this.flushing = flushing
    return flushing
  }

  /**
   * Writes the data with the version read at load (compare-and-swap). When another writer came
   * first, re-reads from the store's principal, keeps their changes to other keys, re-applies
   * ours and tries again, a bounded number of times.
   *
   * Not an async function: the first attempt is the store's write and one `.then` (this runs on
   * every save); only a write that did not land goes on in {@link retry}.
   */
  private write(dirty: Set<string>): Promise<void> {
    try {
      // a session from before maxLifetime (or from Perl) starts its lifetime at its first save
      if (this.config.maxLifetime > 0 && stampCreation(this.data)) dirty.add(UTIME_FIELD)
      return this.attempt(dirty, 0, {})
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /**
   * Attempt number `attempt` of a write: the data's text now, written with the version known
   * (or added, never stored yet). Resolves once it landed (and the user index was written);
   * when another writer came first, or the version is unknown, goes on with {@link retry}.
   * Throws (synchronously) what fails before the store is asked.
   */
  private attempt(dirty: Set<string>, attempt: number, round: WriteRound): Promise<void> {
    const { store } = this.config
    const ttl = ttlNow(this.config, this.data, this.id)
    const plan = this.index.prepare(this.data, this.changed)
    for (const key of this.changed) dirty.add(key)
    this.changed.clear()
    if (attempt === 0) round.listRead = this.index.readAhead(plan)
    const texts = this.loose?.snapshot()
    const { text, layout } = this.textNow(dirty)
    // every key not changed from here on holds its value in `text`, whether or not the write lands
    this.hold(text, layout)
    // the version is not known (a read served by `local`, a store that does not tell it): read it
    if (this.stored && this.version === undefined) return this.retry(dirty, attempt, round, false)
    const opts: WriteOptions = this.stored ? { ttl, mode: 'cas', version: this.version as string } : { ttl, mode: 'add' }
    let written: string | undefined
    opts.onVersion = (version) => (written = version)
    this.lease?.assertFresh()
    const { value, flags } = toStored(this.form, text)
    if (flags !== 0) opts.flags = flags
    // the bases of what this write replaces; changes made while it is in flight take new ones
    const sent = this.bases.take()
    let writing: Promise<WriteResult>
    try {
      writing = store.write(this.key, value, opts)
    } catch (err) {
      this.bases.restore(sent)
      throw err
    }
    return writing.then(
      (result) => {
        if (result !== 'stored') {
          this.bases.restore(sent)
          if (result === 'not_found') throw notFound(this.id, 'it was destroyed or expired while tied, and is not written back')
          return this.retry(dirty, attempt, round, true)
        }
        this.stored = true
        // the version written, when the store tells it (memcached's `ms … c`): the next save is
        // one cas; else (the text protocol's cas does not say it) the next save reads it again
        this.version = written
        this.text = written === undefined ? text : undefined
        if (this.form.serializer === json) wrote(store, this.key, written, text, layout)
        if (texts) this.loose!.settle(texts)
        return plan === undefined ? undefined : this.index.write(this.id, plan, undefined, round.listRead)
      },
      (err: unknown) => {
        this.bases.restore(sent)
        throw err
      },
    )
  }

  /**
   * The data's text now. A `json` session whose source text this process wrote copies the members
   * of the keys not changed since from it (json-layout.ts); when it only knows the text is its own,
   * or a key was added or deleted, it writes the text member by member to learn its layout. The
   * keys changed (`dirty`), and loose keys (changed by the caller's own objects without a trap:
   * one may change between the attempts of a write), are written again.
   */
  private textNow(dirty: Set<string>): { text: string; layout?: Layout } {
    const { serializer } = this.form
    const source = this.bases.source
    if (serializer === json && source?.known !== undefined) {
      const loose = this.loose
      const changed = loose === undefined ? dirty : new Set([...dirty, ...loose.keys()])
      const made =
        (source.known === 'ours' ? undefined : spliced(source.text, source.known, this.data, changed, json.stringify)) ??
        memberwise(this.data, json.stringify)
      // ASCII: json.stringify escapes every other character, and the copied text is its own
      if (made !== undefined) return { text: noteAscii(made.text), layout: made.layout }
    }
    return { text: serializer.stringify(this.data) }
  }

  /**
   * After attempt number `attempt` did not land (`collided`: another writer came first; else the
   * version was unknown): reads theirs from the principal, merges, and makes the next attempt, up
   * to MAX_TRIES in all.
   */
  private async retry(dirty: Set<string>, attempt: number, round: WriteRound, collided: boolean): Promise<void> {
    const { store } = this.config
    // another writer came first, again: wait a little, at random, before reading theirs, so
    // that competing writers spread out instead of colliding on the next round too
    if (collided && attempt > 0) await backoff(attempt, 5, 100)
    const entry = await store.get(this.key, { consistent: true })
    if (entry === undefined) {
      if (this.stored) throw notFound(this.id, 'it was destroyed or expired while tied, and is not written back')
    } else {
      this.stored = true
      this.version = entry.version
      const read = readForm(this.config.serializer, entry)
      if (read.text !== this.text) {
        // another writer under our lock: the next holder's, if the lock was lost (fenced, not merged over)
        await this.lease?.assertHeld()
        this.merge(read.text, dirty)
        // the keys taken from theirs hold their values in it; the merged ones have bases
        this.hold(read.text)
      }
      this.text = read.text
    }
    if (attempt + 1 >= MAX_TRIES)
      throw new SessionError('ERR_CONFLICT', `session ${this.id} kept changing under this save (${MAX_TRIES} tries); save again`)
    return this.attempt(dirty, attempt + 1, round)
  }

  /**
   * Takes another writer's values for every key this session did not change (objects updated in
   * place), and merges the keys it did change with theirs, from each key's stored text before
   * this session changed it (merge3: both sides' pushes to one array are kept). Theirs is then
   * the stored text: the bases of the changed keys become theirs.
   */
  private merge(text: string, dirty: Set<string>): void {
    const { serializer } = this.form
    const theirs = parseData(serializer, text, this.id)
    const loose = this.loose
    const ours = (key: string) => dirty.has(key) || this.changed.has(key) || loose?.changed(key) === true
    const same = (key: string) => serializer.stringify(this.data[key]) === serializer.stringify(theirs[key])
    // (not loose?.stored(takeTheirs(...)): optional chaining would skip the merge itself)
    const taken = takeTheirs(this.data, theirs, ours, same, this.detach, ID_FIELD)
    loose?.stored(taken)
    const next = mergeChanged({
      data: this.data,
      theirs,
      ours,
      baseOf: (key) => this.bases.get(key, () => loose?.storedText(key)),
      serializer,
      detach: this.detach,
      skip: ID_FIELD,
    })
    this.bases.replace(next)
  }
}
