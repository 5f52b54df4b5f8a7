/**
 * The file store's session locks (Store.lock): a proper-lockfile directory `<file>-lock` next to
 * a key's file, a lease held from tie to untie. (The write lock `<file>.lock`, held for one write,
 * is file-mutex.ts.)
 */
import { randomBytes } from 'node:crypto'
import fsCallbacks from 'node:fs'
import path from 'node:path'
import { lock } from 'proper-lockfile'
import { SessionError } from '../errors.js'
import { unrefAfter } from './lock.js'
import type { LockRelease } from './store.js'

/**
 * A session lock (Store.lock) is the directory `<file>-lock`, not the write lock `<file>.lock`
 * (file-mutex.ts): its holder still takes the write lock for every write, delete and touch.
 */
const SESSION_LOCK = '-lock'
/**
 * A session lock's holder refreshes its mtime this often, whatever its ttl: a waiter judges
 * staleness by its own ttl, so a live holder must look alive to a waiter with the shortest (1 s).
 */
const REFRESH_MS = 1000
/** A waiter takes over a session lock once it is `ttl` s + this long past its last refresh. */
const STALE_MARGIN_MS = 1000
/**
 * A holder removes its lock only if its last refresh is younger than this: under the shortest
 * stale time (2 s) with room to spare, so that a removal never races a takeover.
 */
const REMOVE_WITHIN_MS = 1500

type Callback = (err: NodeJS.ErrnoException | null) => void

/**
 * proper-lockfile's file-system calls for a lock directory, none of which follows a link: a link
 * planted at a lock path is judged stale or fresh by its own mtime (lstat), refreshed, if ever,
 * as itself (lutimes), and removed as itself (unlink); its target is never looked at or changed.
 * (rm() of a link removes the link too, but rmdir() of one fails with ENOTDIR, as proper-lockfile
 * calls it for a stale lock: such a link would block the key until removed by hand.)
 */
const NO_FOLLOW_FS = {
  stat: fsCallbacks.lstat,
  realpath: fsCallbacks.realpath,
  mkdir: fsCallbacks.mkdir,
  utimes: fsCallbacks.lutimes,
  rmdir(dir: string, cb: Callback) {
    fsCallbacks.lstat(dir, (err, stat) => {
      if (err) return cb(err)
      if (stat.isSymbolicLink()) fsCallbacks.unlink(dir, cb)
      else fsCallbacks.rmdir(dir, cb)
    })
  },
  rmdirSync(dir: string) {
    if (fsCallbacks.lstatSync(dir).isSymbolicLink()) fsCallbacks.unlinkSync(dir)
    else fsCallbacks.rmdirSync(dir)
  },
}

/**
 * The file-system calls proper-lockfile makes for one session lock, with its removals guarded.
 * proper-lockfile removes a lock directory blindly: a holder that stalled past its ttl would
 * remove the lock of the process that took it over, and of two processes that found one lock
 * stale, the later could remove the lock the earlier just made. So the directory holds a file
 * `owner` with this holder's random token. Once `held`, the directory is refreshed only while
 * it holds our token (else proper-lockfile sees the lock lost: ENOENT), and removed only while it
 * holds our token and is fresh (no one can see it as stale yet, so no one is taking it over);
 * before, another holder's directory is removed only if a fresh look still finds it stale.
 * (Its mtime cannot tell holders apart, as proper-lockfile assumes: it sets it to the next whole second.)
 */
function guardedLockFs(staleMs: number) {
  const token = randomBytes(16).toString('hex')
  let held = false
  const ownerFile = (dir: string) => path.join(dir, 'owner')
  const removable = (stat: fsCallbacks.Stats, owner: string | undefined) =>
    owner === token ? Date.now() < stat.mtime.getTime() + REMOVE_WITHIN_MS : !held && stat.mtime.getTime() < Date.now() - staleMs
  const fs = {
    ...NO_FOLLOW_FS,
    /** proper-lockfile's refresh: only while the directory still holds our token, else the lock is lost. */
    utimes(dir: string, atime: Date, mtime: Date, cb: Callback) {
      if (!held) return fsCallbacks.lutimes(dir, atime, mtime, cb) // the directory we just made
      fsCallbacks.readFile(ownerFile(dir), 'utf8', (err, owner) => {
        if (err && err.code !== 'ENOENT') return cb(err) // proper-lockfile tries again in 1 s
        if (err || owner !== token) return cb(Object.assign(new Error(`${dir} is no longer this holder's lock`), { code: 'ENOENT' }))
        fsCallbacks.lutimes(dir, atime, mtime, cb)
      })
    },
    mkdir(dir: string, cb: Callback) {
      fsCallbacks.mkdir(dir, (err) => {
        if (err) return cb(err)
        fsCallbacks.writeFile(ownerFile(dir), token, { mode: 0o600 }, (writeErr) => {
          if (!writeErr) return cb(null)
          fsCallbacks.rm(dir, { recursive: true, force: true }, () => cb(writeErr))
        })
      })
    },
    rmdir(dir: string, cb: Callback) {
      fsCallbacks.lstat(dir, (err, stat) => {
        if (err) return cb(err.code === 'ENOENT' ? null : err)
        if (stat.isSymbolicLink()) return removable(stat, undefined) ? NO_FOLLOW_FS.rmdir(dir, cb) : cb(null) // no one's lock: judged by its own mtime
        fsCallbacks.readFile(ownerFile(dir), 'utf8', (readErr, owner) => {
          if (readErr && readErr.code !== 'ENOENT') return cb(readErr)
          if (!removable(stat, readErr ? undefined : owner)) return cb(null) // another holder's (now): left alone
          fsCallbacks.rm(dir, { recursive: true, force: true }, cb)
        })
      })
    },
    /** What proper-lockfile calls on process exit for the locks still held. */
    rmdirSync(dir: string) {
      let owner: string | undefined
      try {
        owner = fsCallbacks.readFileSync(ownerFile(dir), 'utf8')
      } catch {
        // no owner file: a lock directory that proper-lockfile made before writing it
      }
      if (removable(fsCallbacks.lstatSync(dir), owner)) fsCallbacks.rmSync(dir, { recursive: true, force: true })
    },
  }
  return { fs, hold: () => void (held = true), token }
}

/** Whether the lock directory `dir` holds `token` in its owner file: this holder's lock, not expired and taken over. */
async function holds(dir: string, token: string): Promise<boolean> {
  try {
    // O_NOFOLLOW: an owner file replaced by a link is no one's token
    const handle = await fsCallbacks.promises.open(
      path.join(dir, 'owner'),
      fsCallbacks.constants.O_RDONLY | fsCallbacks.constants.O_NOFOLLOW,
    )
    try {
      return (await handle.readFile('utf8')) === token
    } finally {
      await handle.close()
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return false // removed, or not a lock directory of ours
    throw err
  }
}

/**
 * One try for the session lock of `file`: its release, or undefined when another holds it. The
 * release is in `holding` from the take until it is called, so that a store's close() can call it.
 */
export async function takeSessionLock(
  key: string,
  file: string,
  ttl: number,
  holding: Set<() => Promise<void>>,
): Promise<LockRelease | undefined> {
  const dir = file + SESSION_LOCK
  const staleMs = ttl * 1000 + STALE_MARGIN_MS
  const guarded = guardedLockFs(staleMs)
  let unlock: () => Promise<void>
  try {
    // proper-lockfile books the locks a process holds by the path it is given, not by the lock
    // directory: a path of its own per lock keeps two holders' books apart (realpath: false, so
    // the path is only a name; the directory is lockfilePath). Compromise (a lost lock) is not
    // an error here: the release then does nothing.
    const name = `${dir}#${randomBytes(6).toString('hex')}`
    const options = {
      realpath: false,
      lockfilePath: dir,
      stale: staleMs,
      update: REFRESH_MS,
      retries: 0,
      fs: guarded.fs,
      onCompromised: () => {},
    }
    unlock = await lock(name, options)
    guarded.hold()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOCKED') return undefined
    throw err
  }
  let released: Promise<void> | undefined
  const release = () =>
    (released ??= (async () => {
      cancelTtl()
      holding.delete(release)
      try {
        await unlock()
      } catch (cause) {
        const code = (cause as NodeJS.ErrnoException).code
        if (code === 'ERELEASED' || code === 'ENOENT') return // lost, or removed with the directory: nothing to do
        const message = `could not remove the lock ${dir} of session ${key} (${code ?? String(cause)}); it ends ${staleMs / 1000} s after its last refresh`
        throw new SessionError('ERR_STORE_UNAVAILABLE', message, { cause })
      }
    })())
  const cancelTtl = unrefAfter(ttl * 1000, () => void release().catch(() => {})) // a failed removal goes stale (see release)
  holding.add(release)
  // released (by the caller or the ttl timer): no longer held, whatever the directory says
  return Object.assign(release, { held: async () => released === undefined && (await holds(dir, guarded.token)) })
}
