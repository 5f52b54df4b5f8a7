/**
 * The public verbs: tieSession, save, untie, reload, destroy, regenerate, isTied, snapshot,
 * updateSession, findSessions, destroySessions.
 */
import { backoff } from './backoff.js'
import { SessionError } from './errors.js'
import { checkId, newId } from './ids.js'
import { md5Hex, planIndex, uidOf } from './index-plan.js'
import { applyIndex, destroyAll, liveSessions } from './principal.js'
import { resolveOptions, resolveTieOptions, type TieOptions } from './options.js'
import { knownText } from './json-layout.js'
import { json, type JSON_ONLY, type JsonSafe } from './json.js'
import { checkDepth, type Serializer } from './serializers.js'
import { Session, type SessionConfig } from './session.js'
import { bookId, bookNewId, notFound, parseData } from './stored.js'
import { readForm, toStored } from './stored-form.js'
import { HOOKS, ID_FIELD } from './tracker.js'
import type { Entry } from './stores/store.js'
import { nowSeconds, readTouching, stampCreation, ttlNow, UTIME_FIELD } from './lifetime.js'

declare const tiedBrand: unique symbol

/** What every tied session has: the read-only id and `await using` support. Only tieSession makes one. */
export interface TiedSession {
  readonly [ID_FIELD]: string
  /** When the session was created (Unix seconds; absent in a session made before this field, or by a tool that does not write it). */
  readonly [UTIME_FIELD]?: number
  [Symbol.asyncDispose](): Promise<void>
  /** Compile-time only: save, untie and the other verbs take nothing but a tied session. */
  readonly [tiedBrand]: true
}

/**
 * A tied session: the user's data, every field possibly absent (a new session has none of them;
 * another process may have deleted one), plus the read-only id and `await using` support.
 */
export type Tied<T extends object = Record<string, unknown>> = Partial<T> & TiedSession

/**
 * The options argument for data `T`: optional when JSON can keep `T`; when `T` holds what JSON
 * cannot (a Date, Map, Set, bigint...), a serializer other than `json` must be given.
 */
export type OptionsFor<T> = [T] extends [JsonSafe<T>]
  ? [opts?: TieOptions]
  : [opts: TieOptions & { serializer: Serializer & { readonly [JSON_ONLY]?: never } }]

/**
 * Ties a session: `undefined`, `null` or `''` creates one with a new id, any other id loads
 * it (`ERR_SESSION_NOT_FOUND` when unknown or expired, `ERR_INVALID_ID` before any I/O when
 * malformed); with `create: true`, an id is created instead (`ERR_CONFLICT` when the store already
 * holds it). Reading and writing the returned object reads and writes the session.
 *
 * @example
 * const s = await tieSession<{ cart: { items: number[] } }>(undefined)
 * s.cart = { items: [] }
 * s.cart.items.push(42)
 * await untie(s)
 */
export async function tieSession<T extends object = Record<string, unknown>>(
  id?: string | null,
  ...[opts = {}]: OptionsFor<T>
): Promise<Tied<T>> {
  const fresh = id === undefined || id === null || id === ''
  if (!fresh) checkId(id)
  // the session keeps this object as its config (updateOnly included): no copy per tie, and
  // ties with the same options share one (nothing writes to a config)
  const config = resolveTieOptions(opts)
  let session: Session
  if (fresh) {
    session = await create(config, config.updateOnly)
  } else if (opts.create === true) {
    session = await createUnder(config, id)
  } else {
    // (no `await` of an absent lock: each await suspends the tie once more)
    const lease = config.acquire === undefined ? undefined : await config.acquire(config.namespace + id)
    try {
      // the read (with `rolling`, touching it in the same step), here rather than in a function
      // of its own: one async frame less per tie
      const key = config.namespace + id
      const entry = config.rolling ? await readTouching(config.store, key, config.ttl) : await config.store.get(key)
      session = loaded(config, id, key, entry)
      if (config.maxLifetime > 0) await session.checkLifetime()
      if (config.rolling) await session.rolled()
    } catch (err) {
      await lease?.unlock()
      throw err
    }
    if (lease) session.holdLock(lease)
  }
  return session.proxy as Tied<T>
}

/** The data of a new session: its id (set when booked) and its creation time. */
const newData = (): Record<string, unknown> => ({ [ID_FIELD]: '', [UTIME_FIELD]: nowSeconds() })

async function create(config: SessionConfig, updateOnly: boolean): Promise<Session> {
  if (updateOnly) {
    const id = newId()
    const session = new Session(config, id, newData(), { version: undefined, text: undefined, stored: false })
    // nobody else knows the new id yet, but the holder's lock must be there before it tells anyone
    if (config.acquire) session.holdLock(await config.acquire(config.namespace + id))
    return session
  }
  // with lock: 'exclusive' the lock is taken before the id is booked: a lock that cannot be
  // taken leaves no session behind
  const data = newData()
  const { id, text, lease, version } = await bookNewId(config, data, config.acquire)
  const session = new Session(config, id, data, { version, text, stored: true })
  if (lease) session.holdLock(lease)
  return session
}

/** A new session under a caller's id, booked with `add`: never over a session already stored. */
async function createUnder(config: SessionConfig, id: string): Promise<Session> {
  const data = newData()
  const booked = await bookId(config, id, data, config.acquire)
  if (booked === undefined) {
    throw new SessionError(
      'ERR_CONFLICT',
      `session ${id} already exists; create: true never overwrites a session (tie it without create to load it)`,
    )
  }
  const session = new Session(config, id, data, { version: booked.version, text: booked.text, stored: true })
  if (booked.lease) session.holdLock(booked.lease)
  return session
}

/**
 * The session `id` whose stored entry was read at `key` (ERR_SESSION_NOT_FOUND when there is none). The
 * tie then checks its lifetime: one past `maxLifetime` is deleted and ERR_SESSION_NOT_FOUND.
 */
function loaded(config: SessionConfig, id: string, key: string, entry: Entry | undefined): Session {
  if (entry === undefined) throw notFound(id)
  const { form, text } = readForm(config.serializer, entry)
  const known = form.serializer === json ? knownText(config.store, key, text, entry.version) : undefined
  const data = parseData(form.serializer, text, id, known !== undefined)
  return new Session(config, id, data, { version: entry.version, text, stored: true, form, known })
}

/** The session behind a tied object (its root proxy answers HOOKS), or undefined. */
function sessionFrom(s: unknown): Session | undefined {
  const hooks = typeof s === 'object' && s !== null ? (s as Record<symbol, unknown>)[HOOKS] : undefined
  return hooks instanceof Session ? hooks : undefined
}

function sessionOf(s: TiedSession, verb: string): Session {
  const session = sessionFrom(s)
  if (session === undefined) throw new TypeError(`tied-session: ${verb}() takes an object returned by tieSession()`)
  return session
}

/**
 * `verb` of the session behind `s`: the session's own promise (no async frame of its own, and no
 * extra microtask steps); whatever goes wrong before it (an object that is not a tied session) is
 * a rejection, as from an async function.
 */
function run(s: TiedSession, verb: 'save' | 'untie' | 'reload'): Promise<void> {
  try {
    return sessionOf(s, verb)[verb]()
  } catch (err) {
    return Promise.reject(err as Error)
  }
}

/** Writes pending changes now and throws what went wrong (also a failed automatic flush). */
export function save(s: TiedSession): Promise<void> {
  return run(s, 'save')
}

/** Writes pending changes and releases the session; idempotent. Later writes to `s` throw. */
export function untie(s: TiedSession): Promise<void> {
  return run(s, 'untie')
}

/** Reads the session again from the store, skipping read caches; unsaved changes are dropped. */
export function reload(s: TiedSession): Promise<void> {
  return run(s, 'reload')
}

/** Removes the session from the store now (Apache::Session's `tied(%s)->delete`) and releases it. */
export async function destroy(s: TiedSession): Promise<void> {
  await sessionOf(s, 'destroy').destroy()
}

/**
 * Gives the session a new id, keeps its data and deletes the old id: call it at login, the
 * defence against session fixation. Returns the new id (`s._session_id` shows it too).
 */
export async function regenerate(s: TiedSession): Promise<string> {
  const session = sessionOf(s, 'regenerate')
  await session.regenerate()
  return session.id
}

/**
 * A deep plain copy of the session's data as it is now (no views, detached from the session):
 * for `structuredClone`, logging, or handing the data to code that must not change the session.
 */
export function snapshot<T extends object>(s: Tied<T>): T & { readonly [ID_FIELD]: string } {
  const session = sessionOf(s, 'snapshot')
  return session.snapshot() as T & { readonly [ID_FIELD]: string }
}

/**
 * Where a tied session stands, for the web adapters: `open`, `untied` or `destroyed`, and whether
 * the store holds it (false for a new `updateOnly` session that no save has written).
 */
export function sessionStatus(s: TiedSession): { state: 'open' | 'untied' | 'destroyed'; stored: boolean } {
  return sessionOf(s, 'sessionStatus').status()
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
  ...[opts = {}]: OptionsFor<T>
): Promise<Saved<T>> {
  checkId(id)
  if (typeof fn !== 'function') throw new TypeError('tied-session: updateSession(id, fn) needs a function')
  const config = resolveOptions(opts)
  const { store, principal } = config
  const key = config.namespace + id
  for (let attempt = 0; attempt < UPDATE_TRIES; attempt++) {
    const entry = await store.get(key, { consistent: true })
    if (entry === undefined) throw notFound(id)
    // read in the form Perl (or Node) wrote it, written back in that form
    const { form, text: before } = readForm(config.serializer, entry)
    const { serializer } = form
    const data = parseData(serializer, before, id)
    const listed = principal ? uidOf(data[principal.field]) : undefined
    const created = data[UTIME_FIELD]
    const ttl = ttlNow(config, data, id)
    const result = await fn(data as T)
    checkDepth(result ?? data, '', 0)
    const next = (serializer.copy ? serializer.copy(result ?? data, '') : (result ?? data)) as Record<string, unknown>
    if (typeof next !== 'object' || next === null || Array.isArray(next))
      throw new TypeError('tied-session: updateSession fn must return an object or undefined')
    next[ID_FIELD] = id
    // the creation time is read-only, as in a tie
    if (created !== undefined) next[UTIME_FIELD] = created
    else if (config.maxLifetime > 0) stampCreation(next)
    // the one write path: the principal's stamps go with the write, the index after it
    const plan = principal ? planIndex(next, principal.field, listed, ttl).plan : undefined
    const text = serializer.stringify(next)
    if (text === before) return next as Saved<T>
    const { value, flags } = toStored(form, text)
    const written = await store.write(key, value, { ttl, mode: 'cas', version: entry.version ?? '', ...(flags ? { flags } : {}) })
    if (written === 'not_found') throw notFound(id)
    if (written === 'stored') {
      if (plan) await applyIndex({ store, namespace: config.namespace }, plan, { id, ttl, maxSessions: principal?.maxSessions })
      return next as Saved<T>
    }
    // another writer came first: wait a little, at random, so that competing writers spread out
    await backoff(attempt, 5, 100)
  }
  throw new SessionError('ERR_CONFLICT', `session ${id} kept changing under updateSession (${UPDATE_TRIES} tries); try again`)
}

function indexPlace(uid: unknown, opts: TieOptions, verb: string) {
  const id = uidOf(uid)
  if (id === undefined) throw new TypeError(`tied-session: ${verb}(uid) needs a user id (a non-empty string or a number)`)
  const config = resolveOptions(opts)
  // without them there is no index to read: an answer of [] or 0 would be a silent lie
  if (config.principal === undefined) {
    throw new TypeError(
      `tied-session: ${verb}() needs option principal (the session field naming the user, e.g. 'uid', or TIED_SESSION_PRINCIPAL): sessions are indexed by user only with it`,
    )
  }
  if (!config.storeGiven) {
    throw new TypeError(
      `tied-session: ${verb}() needs option store or servers (or TIED_SESSION_SERVERS or TIED_SESSION_DIR): the store whose index to read`,
    )
  }
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
