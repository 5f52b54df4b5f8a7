/**
 * Which servers of a replicated pool (./memcached-replicas.ts) may hold a copy older than another:
 * the "suspects". A read may trust a key's own server alone, one command as without replicas,
 * only while this process knows that none of the key's servers is suspect, from a check that every
 * server answered and that started less than SUSPECT_LEASE_MS ago. Otherwise it reads every copy.
 *
 * - A write that leaves a server without its copy (down, failed, or not answering in time) marks
 *   that server suspect before the write is acknowledged: a marker key on every other server, then
 *   a wait of SUSPECT_LEASE_MS after the markers landed. A check that is current when a read starts
 *   began less than SUSPECT_LEASE_MS before it, so after the markers of every write acknowledged
 *   before that read: it saw them, and the read does not trust the suspect's old copy. The process
 *   that marks stops trusting the server at once.
 * - Checks run in the background (to every server, one `get` of every server's marker), renewed
 *   halfway through the lease, so that under load reads keep trusting without waiting for one. A
 *   check that a server does not answer leaves the process trusting nothing until one succeeds.
 * - A marker lives as long as the write it was set for, plus MARKER_SLACK: the newest copy it
 *   protects lives that long at most, and once that copy is gone a read of every copy would serve
 *   the stale one as well. Until then every key with a copy on the suspect is read from every copy
 *   (and repaired). Later writes that miss the server make its markers longer, with no new wait;
 *   none makes one shorter (another process's keys may live longer).
 */
import { SessionError } from '../errors.js'
import type { WireClient } from './memcached-wire.js'

/** How long a clean check lets reads trust single copies, and how long a write waits after marking a server. */
export const SUSPECT_LEASE_MS = 500
/** The marker of suspect server `s` is the key `${MARKER_PREFIX}${s}`, on every other server, its value `s`. */
export const MARKER_PREFIX = 'tied-session:suspect:'
/**
 * Seconds a marker outlives the write it was set for: while a server stays down, the writes that
 * miss it extend its markers only once this much of it is used up, not each one.
 */
export const MARKER_SLACK = 60

const markerKey = (server: string) => MARKER_PREFIX + server

/** The suspects of one pool, as this process knows them: see the module comment. */
export class Suspects {
  /** The last check every server answered: when it started (performance.now()), and the suspects it found. */
  private clean: { at: number; found: Set<string> } | undefined
  private checking = false
  /** After a failed check, none before this time. */
  private retryAt = 0
  /**
   * Servers this process marked: until when their markers live (performance.now(); Infinity: for
   * good), the marking (undefined once it failed), and whether it completed (readers see it).
   */
  private readonly marked = new Map<string, { until: number; done: Promise<void> | undefined; seen: boolean }>()
  private readonly keys: string[]

  constructor(
    private readonly servers: readonly string[],
    private readonly clients: ReadonlyMap<string, WireClient>,
    /** memcached's exptime for a TTL in seconds. */
    private readonly exptime: (ttl: number) => number,
  ) {
    this.keys = servers.map(markerKey)
  }

  /** True when a read of a key whose copies are on `copies` may trust the first alone (see the module comment). */
  trusts(copies: readonly string[]): boolean {
    const now = performance.now()
    const clean = this.clean
    if (clean === undefined || now - clean.at > SUSPECT_LEASE_MS / 2) this.check(now)
    if (clean === undefined || now - clean.at > SUSPECT_LEASE_MS) return false
    for (const server of copies) {
      if (clean.found.has(server)) return false
      const mine = this.marked.get(server)
      if (mine !== undefined && mine.until > now) return false
    }
    return true
  }

  /**
   * Marks `server` suspect for `ttl` seconds (0: for good), as a write that left it without its
   * copy must before it is acknowledged; resolves once every reader's current check sees it.
   * Rejects with ERR_STORE_UNAVAILABLE (outcome unknown: the write itself landed elsewhere) when
   * no other server took the marker.
   */
  mark(server: string, ttl: number): Promise<void> {
    const now = performance.now()
    const had = this.marked.get(server)
    if (had?.done !== undefined && had.until >= (ttl === 0 ? Infinity : now + (ttl + 1) * 1000)) return had.done
    // markers that readers have seen and that still live are only made longer: no reader lost sight of them
    const seen = had !== undefined && had.seen && had.until > now
    const markerTtl = ttl === 0 ? 0 : ttl + MARKER_SLACK
    const entry = { until: ttl === 0 ? Infinity : now + markerTtl * 1000, done: undefined as Promise<void> | undefined, seen }
    const done = this.placeMarkers(server, markerTtl, !seen).then(() => {
      entry.seen = true
    })
    entry.done = done
    done.catch(() => {
      if (entry.done === done) entry.done = undefined // the next write that misses the server tries again
    })
    this.marked.set(server, entry)
    return done
  }

  /** Sets `server`'s markers for `ttl` seconds; with `wait`, resolves only once every current check has seen them. */
  private async placeMarkers(server: string, ttl: number, wait: boolean): Promise<void> {
    const others = this.servers.filter((s) => s !== server)
    const placed = await Promise.allSettled(others.map((s) => this.placeMarker(this.clients.get(s)!, server, ttl)))
    if (!placed.some((p) => p.status === 'fulfilled' && p.value)) {
      const failed = placed.find((p) => p.status === 'rejected')
      throw new SessionError(
        'ERR_STORE_UNAVAILABLE',
        `memcached ${server} missed a write, and no other server (${others.join(', ')}) took the marker that says so; the write landed on some copies`,
        { outcomeUnknown: true, ...(failed ? { cause: failed.reason } : {}) },
      )
    }
    // every check started from now on sees the markers; the ones started before expire within the lease
    if (wait) await new Promise((resolve) => setTimeout(resolve, SUSPECT_LEASE_MS))
  }

  /**
   * Sets `server`'s marker on `client` for at least `ttl` seconds (0: for good), never shortening
   * one that lives longer: it protects other keys, written with a longer TTL by other processes.
   * Compare-and-swap, so that two processes marking at once cannot leave the shorter one.
   */
  private async placeMarker(client: WireClient, server: string, ttl: number): Promise<boolean> {
    const key = markerKey(server)
    for (let tries = 0; tries < 3; tries++) {
      const there = await client.metaGet(key, { cas: true, ttl: true })
      if (there !== undefined && (there.ttl === -1 || (ttl !== 0 && there.ttl !== undefined && there.ttl >= ttl))) return true
      const reply = await client.metaSet(
        key,
        server,
        there === undefined ? { mode: 'add', ttl: this.exptime(ttl) } : { mode: 'set', cas: there.cas!, ttl: this.exptime(ttl) },
      )
      if (reply.result === 'stored') return true
    }
    return false // changed under each try: another process is marking it too
  }

  /** Starts a check (every server: its markers) unless one is running or a failed one is too recent. */
  private check(now: number): void {
    if (this.checking || now < this.retryAt) return
    this.checking = true
    Promise.all(this.servers.map((s) => this.clients.get(s)!.getMany(this.keys)))
      .then(
        (replies) => {
          const found = new Set<string>()
          for (const items of replies) for (const item of items) found.add(String(item.value))
          if (this.clean === undefined || this.clean.at < now) this.clean = { at: now, found }
        },
        () => {
          this.retryAt = performance.now() + SUSPECT_LEASE_MS / 4
        },
      )
      .finally(() => {
        this.checking = false
      })
  }
}
