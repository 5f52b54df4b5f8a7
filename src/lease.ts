/**
 * An exclusive session lock (lock: 'exclusive') held as a lease: it ends `lockTtl` s after it was
 * taken, whether or not its holder still runs. A holder that ran past its lease (a GC pause, a VM
 * pause, SIGSTOP) must not write: the next holder may have taken the lock and written since.
 */
import { SessionError } from './errors.js'
import type { LockRelease } from './stores/store.js'

/**
 * The part of a lease kept back as a safety margin, so that a write sent just before the end
 * cannot land after it: a quarter of the ttl, at most 1 s (a store answers or fails within its
 * request timeout, 1 s by default).
 */
const MARGIN_SHARE = 0.25
const MAX_MARGIN_MS = 1000

/** A session lock taken at a known time, with the checks a holder makes before it writes. */
export class Lease {
  /** performance.now() at which the lease, less its margin, runs out. */
  private readonly usableUntil: number

  constructor(
    readonly key: string,
    private readonly release: LockRelease,
    private readonly ttl: number,
  ) {
    // performance.now() is monotonic and keeps counting while the process is stopped (SIGSTOP,
    // a paused VM), unlike a timer that fires late; the lock's ttl at the store started at most
    // when the lock call resolved (memcached: the lock key lives ttl + 1 s from the add).
    this.usableUntil = performance.now() + ttl * 1000 - Math.min(MAX_MARGIN_MS, ttl * 1000 * MARGIN_SHARE)
  }

  /** Releases the lock; a lock lost meanwhile is left to its new holder. */
  unlock(): Promise<void> {
    return this.release()
  }

  /** Throws ERR_LOCKED ('lock lost') when the lease has run out or is about to: nothing may be written under it. */
  assertFresh(): void {
    const late = performance.now() - this.usableUntil
    if (late < 0) return
    const detail = `its lease (lockTtl ${this.ttl} s) ran out ${Math.round(late)} ms before this write (less its safety margin)`
    throw lockLost(this.key, `${detail}: this process stalled or held the session too long`)
  }

  /**
   * Throws ERR_LOCKED ('lock lost') when the store says the lock is no longer this holder's: then
   * another writer's value is the next holder's, and must not be merged over.
   */
  async assertHeld(): Promise<void> {
    if (this.release.held === undefined || (await this.release.held())) return
    throw lockLost(this.key, `the store says another holder has it now (lockTtl ${this.ttl} s ran out while this one held it)`)
  }
}

/** The error of a write under a lock that is no longer this holder's. */
function lockLost(key: string, why: string): SessionError {
  const message = `the lock of session ${key} was lost: ${why}; nothing was written. Tie the session again and redo the change; keep lockTtl above your longest hold`
  return new SessionError('ERR_LOCKED', message)
}
