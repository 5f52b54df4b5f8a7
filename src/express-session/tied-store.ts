/**
 * TiedStore: an express-session Store over tied-session's stores, so that an express-session app
 * switches with one line and gains the principal/local split, TTLs over 30 days, fast failure,
 * the user index (`principal`) and the CLI.
 */
import session from 'express-session'
import type { SessionData } from 'express-session'
import { destroy, isSessionError, snapshot, tieSession, untie, updateSession, type TieOptions } from '../index.js'
import { resolveOptions } from '../options.js'

/** Options of {@link TiedStore}: the tie options that make sense for a store of whole sessions. */
export type TiedStoreOptions = Omit<
  TieOptions,
  'create' | 'autoSave' | 'updateOnly' | 'lock' | 'lockTimeout' | 'lockTtl' | 'signal' | 'onError'
>

type Callback<T = void> = (err: unknown, value?: T) => void

/**
 * An express-session `Store` (get, set, destroy, touch, all, length, clear) over the file store,
 * memcached (`servers`, `local`) or any tied-session `Store`. It accepts the ids express-session
 * makes (`genid`): an id it has not seen is created with `add`, never over another session.
 * Sessions expire `expires` seconds after their last save or touch (default 86400).
 *
 * @example
 * app.use(session({ store: new TiedStore({ servers: ['10.0.0.15:11211'], principal: 'uid' }), secret, resave: false, saveUninitialized: false }))
 */
export class TiedStore extends session.Store {
  private readonly options: TieOptions
  /** The store, namespace and ttl the options name (for touch and listing), resolved once. */
  private readonly place: Pick<ReturnType<typeof resolveOptions>, 'store' | 'namespace' | 'ttl'>

  constructor(options: TiedStoreOptions = {}) {
    super()
    for (const key of ['create', 'autoSave', 'updateOnly', 'lock', 'lockTimeout', 'lockTtl', 'signal', 'onError']) {
      if (key in options) throw new TypeError(`tied-session: TiedStore takes no option ${key} (it reads and writes whole sessions)`)
    }
    this.place = resolveOptions(options)
    this.options = { ...options, autoSave: false }
  }

  /**
   * The session stored under `sid`, or null when there is none (unknown, expired, or not a valid
   * id). With `whole`, also null for a session without express-session's `cookie`: one that
   * {@link write} has booked but not yet filled (or one tieSession made), which express-session
   * cannot use.
   */
  private async read(sid: string, whole: boolean): Promise<SessionData | null> {
    try {
      const s = await tieSession(sid, this.options)
      const { _session_id: _, ...data } = snapshot(s)
      await untie(s)
      if (whole && (typeof data.cookie !== 'object' || data.cookie === null)) return null
      return data as unknown as SessionData
    } catch (err) {
      if (isSessionError(err, 'ERR_SESSION_NOT_FOUND') || isSessionError(err, 'ERR_INVALID_ID')) return null
      throw err
    }
  }

  /** Stores `data` as the whole session `sid`: replaced with compare-and-swap, or created with add. */
  private async write(sid: string, data: SessionData): Promise<void> {
    // express-session's Cookie becomes plain data through its toJSON, as every store stores it
    const plain = JSON.parse(JSON.stringify(data)) as Record<string, unknown>
    for (let round = 0; round < 3; round++) {
      try {
        await updateSession(sid, () => ({ ...plain }), this.options)
        return
      } catch (err) {
        if (!isSessionError(err, 'ERR_SESSION_NOT_FOUND')) throw err
      }
      try {
        const s = await tieSession<Record<string, unknown>>(sid, { ...this.options, create: true })
        Object.assign(s, plain)
        await untie(s)
        return
      } catch (err) {
        // created by a request of the same browser meanwhile: update it instead
        if (!isSessionError(err, 'ERR_CONFLICT')) throw err
      }
    }
    throw new Error(`tied-session: session ${sid} kept appearing and disappearing while TiedStore stored it; try again`)
  }

  private async remove(sid: string): Promise<void> {
    let s
    try {
      s = await tieSession(sid, this.options)
    } catch (err) {
      if (isSessionError(err, 'ERR_SESSION_NOT_FOUND') || isSessionError(err, 'ERR_INVALID_ID')) return
      throw err
    }
    await destroy(s)
  }

  private async ids(): Promise<string[]> {
    const { store, namespace } = this.place
    if (store.keys === undefined)
      throw new TypeError('tied-session: this store cannot list its keys, so TiedStore cannot answer all, length or clear')
    const ids: string[] = []
    for await (const key of store.keys(namespace)) ids.push(key.slice(namespace.length))
    return ids
  }

  private async readAll(): Promise<Record<string, SessionData>> {
    const all: Record<string, SessionData> = {}
    for (const sid of await this.ids()) {
      // user index keys and lock keys read as no session, and are left out
      let data
      try {
        data = await this.read(sid, false)
      } catch (err) {
        // a user's latest-session key (md5 hex of the uid) holding an id that is not 32 hex chars
        // (genid's) does not look like an index value: it is not a session, not a corrupt one
        if (isSessionError(err, 'ERR_CORRUPT') && /^[0-9a-f]{32}$/.test(sid)) continue
        throw err
      }
      if (data !== null) all[sid] = data
    }
    return all
  }

  /** Runs `work` and hands its outcome to an express-session callback. */
  private run<T>(work: Promise<T>, cb: Callback<T> | undefined): void {
    work.then(
      (value) => cb?.(null, value),
      // without a callback the caller has no error path: the store's 'error' event is it (as for
      // any EventEmitter, an 'error' nobody listens to is thrown, never dropped)
      (err: unknown) => (cb ? cb(err) : this.emit('error', err)),
    )
  }

  override get(sid: string, cb: Callback<SessionData | null>): void {
    this.run(this.read(sid, true), cb)
  }

  override set(sid: string, data: SessionData, cb?: Callback): void {
    this.run(this.write(sid, data), cb)
  }

  override destroy(sid: string, cb?: Callback): void {
    this.run(this.remove(sid), cb)
  }

  /** Restarts the session's expiry without writing it (store `touch`); a session gone meanwhile is no error. */
  override touch(sid: string, _data: SessionData, cb?: Callback): void {
    const { store, namespace, ttl } = this.place
    this.run(
      store.touch(namespace + sid, ttl).then(() => undefined),
      cb,
    )
  }

  override all(cb: Callback<Record<string, SessionData>>): void {
    this.run(this.readAll(), cb)
  }

  override length(cb: Callback<number>): void {
    this.run(
      this.readAll().then((all) => Object.keys(all).length),
      cb,
    )
  }

  override clear(cb?: Callback): void {
    const work = async () => {
      for (const sid of Object.keys(await this.readAll())) await this.remove(sid)
    }
    this.run(work(), cb)
  }
}
