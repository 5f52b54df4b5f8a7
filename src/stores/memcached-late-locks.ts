/**
 * Locks whose `add` got no answer, removed once their server answers again. A memcached server
 * that was stalled (SIGSTOP, a paused VM) with a lock `add` in its socket buffer runs it when it
 * wakes, though the tie that sent it failed: the key would stay locked for a whole lockTtl.
 */

/**
 * How long such a lock is looked for. Past that, a lock the server applies later ends by its own
 * ttl. Bounded because each look that times out costs a connection (the client drops a socket
 * whose reply is late).
 */
const LOOK_FOR_MS = 2 * 60_000
/**
 * The longest pause between looks at a silent server, so that a lock tie works again within about
 * requestTimeout + 1 s of the server's return.
 */
const MAX_PAUSE_MS = 500
/**
 * Once the server answered, each lock is looked at once more this much later: the `add` came on
 * a connection that timed out and was dropped, and the server may run it after a look made on a
 * new connection.
 */
const SECOND_LOOK_MS = 200
/** Locks looked for at most; past that a late lock ends by its ttl (a long outage must not grow this without end). */
const MAX_LOCKS = 10_000

interface Late {
  lockKey: string
  token: string
  until: number
  looks: number
}

/**
 * One sweeper per store: while a server stays silent, one call per round probes it (not one per
 * lock, however many lock ties failed); once it answers, every lock of that server is removed if
 * it still holds the token (`remove`: a conditional delete), and looked at a second time.
 */
export class LateLocks {
  private readonly locks = new Map<string, Late>()
  private sweeping: Promise<void> | undefined
  private closed = false
  private wake: (() => void) | undefined

  constructor(
    /** Removes the lock `lockKey` if it still holds `token`; rejects when the server does not answer. */
    private readonly remove: (lockKey: string, token: string) => Promise<void>,
    /** The server that holds `key`. */
    private readonly serverOf: (key: string) => string,
  ) {}

  /** Looks for the lock `lockKey` with `token`, whose `add` got no answer, until it is removed or LOOK_FOR_MS passed. */
  add(lockKey: string, token: string): void {
    if (this.closed || this.locks.size >= MAX_LOCKS) return // it ends by its ttl
    this.locks.set(`${lockKey} ${token}`, { lockKey, token, until: performance.now() + LOOK_FOR_MS, looks: 0 })
    this.sweeping ??= this.sweep()
  }

  /** Stops looking; resolves once the sweeper has stopped (the store closes its sockets meanwhile, so a look in flight fails at once). */
  async close(): Promise<void> {
    this.closed = true
    this.wake?.()
    await this.sweeping
  }

  private async sweep(): Promise<void> {
    for (let silent = 0; this.locks.size > 0 && !this.closed;) {
      const answered = [...this.locks.values()].some((late) => late.looks > 0)
      await this.nap(answered ? SECOND_LOOK_MS : Math.min(MAX_PAUSE_MS, 100 * 1.5 ** silent))
      const now = performance.now()
      const byServer = new Map<string, Late[]>()
      for (const [id, late] of this.locks) {
        if (late.until <= now) {
          this.locks.delete(id)
          continue
        }
        const server = this.serverOf(late.lockKey)
        const group = byServer.get(server)
        if (group) group.push(late)
        else byServer.set(server, [late])
      }
      const rounds = await Promise.all([...byServer.values()].map((group) => this.look(group)))
      silent = rounds.every((ok) => !ok) ? silent + 1 : 0
    }
    this.locks.clear()
    // in the same synchronous step as the loop's last check: an add() from now on starts a new sweep
    this.sweeping = undefined
  }

  /** Looks at one server's locks: the first as a probe, the rest only if it answered. Resolves to whether the server answered. */
  private async look([first, ...rest]: Late[]): Promise<boolean> {
    if (first === undefined || !(await this.lookAt(first))) return false
    await Promise.all(rest.map((late) => this.lookAt(late)))
    return true
  }

  private async lookAt(late: Late): Promise<boolean> {
    if (this.closed) return false
    try {
      await this.remove(late.lockKey, late.token)
    } catch {
      return false // no answer yet: the sweep is the retry, and a lock it never removes ends by its ttl
    }
    if (++late.looks >= 2) this.locks.delete(`${late.lockKey} ${late.token}`)
    return true
  }

  /** Resolves after `ms` on an unref'd timer (the sweep never keeps the process alive), or at once on close(). */
  private nap(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined
        resolve()
      }, ms).unref()
      this.wake = () => {
        clearTimeout(timer)
        this.wake = undefined
        resolve()
      }
    })
  }
}
