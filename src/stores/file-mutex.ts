/**
 * The file store's write lock: a symbolic link `<file>.lock` whose target names its holder
 * (`tied-session:<pid>@<pid namespace>:<token>`), made and removed around one write, delete or touch.
 *
 * symlink() is an atomic exclusive create (EEXIST when anything is at the path), and one system
 * call; readlink() reads the holder back without following anything. A lock lives for
 * microseconds: it is taken, used and removed in one synchronous stretch of JavaScript, with no
 * await between, so no other code of this process runs while it is held. A waiter retries with a
 * short jittered backoff. A holder that died (its pid is gone) leaves a lock that the next writer
 * takes over at once; any other lock (a live pid that stalled, a pid of another PID namespace, a
 * directory left by an older version's proper-lockfile, a link planted by someone) once it is
 * STALE_MS old by its own mtime. An older version's lock directory at the same path keeps both
 * versions out of each other's writes during an upgrade. A pid is trusted only from a holder in
 * this PID namespace (containers sharing one directory see different pids). On Windows, where
 * making a symbolic link needs a privilege, the lock is a file made with O_EXCL holding the same text.
 */
import fs from 'node:fs'
import path from 'node:path'
import { SessionError } from '../errors.js'
import { randomHex } from './file-keys.js'

/** A lock this old (by its own mtime) is taken over whoever holds it; a live holder keeps one for microseconds. */
export const STALE_MS = 4000
/** How long a writer waits for a held lock before ERR_STORE_UNAVAILABLE. */
const WAIT_MS = 5000

const PROCESS_TOKEN = randomHex()
let taken = 0
const OURS = /^tied-session:(\d+)@([^:]*):[0-9a-f]+$/

/** This process's PID namespace ('pid:[4026531836]' on Linux), so that a pid is judged only where it means something. */
export const PID_NAMESPACE = (() => {
  try {
    return fs.readlinkSync('/proc/self/ns/pid').replace(/[^\w[\]]/g, '')
  } catch {
    return process.platform // no /proc: pids of one host
  }
})()
/** Windows: symlink() needs a privilege there, so the lock is a file made with O_EXCL instead. */
const AS_FILE = process.platform === 'win32'

/** The text of the lock at `lock` (its link's target, or on Windows its content); ENOENT when there is none. */
function holderOf(lock: string): string {
  return AS_FILE ? fs.readFileSync(lock, 'utf8') : fs.readlinkSync(lock)
}

/** A system call's error code, or undefined. */
const codeOf = (err: unknown) => (err as NodeJS.ErrnoException).code

/** Whether process `pid` is gone (signal 0 tests for existence; EPERM: it exists, as another user's). */
function gone(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return false
  } catch (err) {
    return codeOf(err) === 'ESRCH'
  }
}

/**
 * Whether the thing at `lock` (lstat'ed as `stat`) is a dead holder's lock: ours with a pid that
 * is gone, or anything STALE_MS past its mtime. ENOENT: removed meanwhile (not stale; try again).
 */
function isStale(lock: string, stat: fs.Stats): boolean {
  if (stat.mtimeMs < Date.now() - STALE_MS) return true
  if (!(AS_FILE ? stat.isFile() : stat.isSymbolicLink())) return false
  const match = OURS.exec(holderOf(lock))
  return match !== null && match[2] === PID_NAMESPACE && gone(Number(match[1]))
}

/**
 * Removes the stale thing at `lock` that was lstat'ed as `judged`. It is first renamed to a temp
 * name (atomic), so two waiters that found it stale cannot both remove it and the second one a
 * fresh lock; if what was moved is not what was judged (replaced meanwhile by a live holder), it
 * is put back (link fails if yet another lock is there: that holder then finds its lock lost
 * before it renames, see held()).
 */
function removeStale(directory: string, lock: string, judged: fs.Stats): void {
  const moved = path.join(directory, `.${randomHex()}.tmp`) // deleteExpired sweeps it if we die here
  try {
    fs.renameSync(lock, moved)
  } catch (err) {
    if (codeOf(err) === 'ENOENT') return // another waiter moved it
    throw err
  }
  const now = fs.lstatSync(moved)
  if (now.ino !== judged.ino || now.dev !== judged.dev) {
    try {
      if (now.isDirectory()) fs.renameSync(moved, lock)
      else fs.linkSync(moved, lock) // link() does not follow a symbolic link: it links the link
    } catch {
      // another lock is there now: the holder we moved finds its lock lost (held() is false)
    }
  }
  fs.rmSync(moved, { recursive: true, force: true })
}

/** One try: true when this process now holds `lock` (with `target`), false when another holder does. */
function tryTake(directory: string, lock: string, target: string): boolean {
  try {
    if (AS_FILE) fs.writeFileSync(lock, target, { flag: 'wx', mode: 0o600 })
    else fs.symlinkSync(target, lock)
    return true
  } catch (err) {
    if (codeOf(err) !== 'EEXIST') throw err
  }
  let stat: fs.Stats
  try {
    stat = fs.lstatSync(lock)
    if (!isStale(lock, stat)) return false
  } catch (err) {
    if (codeOf(err) === 'ENOENT') return tryTake(directory, lock, target) // released meanwhile
    throw err
  }
  removeStale(directory, lock, stat)
  return false // the next try, after the backoff, takes it unless another waiter was quicker
}

/** Whether the lock at `lock` still names `target`. */
function holds(lock: string, target: string): boolean {
  try {
    return holderOf(lock) === target
  } catch (err) {
    if (codeOf(err) === 'ENOENT' || codeOf(err) === 'EINVAL' || codeOf(err) === 'EISDIR') return false // gone, or not ours (taken over)
    throw err
  }
}

/** Jittered backoff: 0.1-0.2 ms at first (a lock lives microseconds; setTimeout makes it 1 ms), growing to 10-20 ms. */
const backoff = (attempt: number) => Math.min(20, 0.2 * 1.6 ** attempt) * (0.5 + Math.random() / 2)

/**
 * Runs `fn` holding the write lock of `file` (the link `<file>.lock`) and returns what it returns.
 * `fn` is synchronous, so the lock is never held across an await. `held()` throws if the lock
 * was taken over meanwhile (only a holder stopped for STALE_MS can be); call it just before the
 * rename that commits a write.
 */
export async function withWriteLock<T>(directory: string, key: string, file: string, fn: (held: () => void) => T): Promise<T> {
  const lock = `${file}.lock`
  const target = `tied-session:${process.pid}@${PID_NAMESPACE}:${PROCESS_TOKEN}${(taken++).toString(16)}`
  const started = performance.now()
  for (let attempt = 0; !tryTake(directory, lock, target); attempt++) {
    if (performance.now() - started > WAIT_MS) {
      const hint = `another writer holds ${lock}; a dead process's lock is taken over at once, a stalled one's after ${STALE_MS / 1000} s`
      const cause = Object.assign(new Error(`${lock} is held`), { code: 'ELOCKED' })
      throw new SessionError('ERR_STORE_UNAVAILABLE', `could not lock key "${key}" within ${WAIT_MS / 1000} s (${hint}); try again`, {
        cause,
      })
    }
    await new Promise((resolve) => setTimeout(resolve, backoff(attempt)))
  }
  let checked = false
  const held = () => {
    if ((checked = holds(lock, target))) return
    const message = `lost the lock of key "${key}" (this process stalled for over ${STALE_MS / 1000} s); try again`
    throw new SessionError('ERR_STORE_UNAVAILABLE', message)
  }
  try {
    return fn(held)
  } finally {
    // only our own link: after a takeover, the link there is the new holder's (checked: held()
    // just found it ours, in this same synchronous stretch)
    if (checked || holds(lock, target)) fs.unlinkSync(lock)
  }
}
