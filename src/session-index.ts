/**
 * A tied session's side of the user index (principal.ts): which uid the index lists it under,
 * what a write must stamp into the data and do to the index, and the index write after it. Every
 * write path of a session (save, regenerate) goes through here, so the index never lies.
 */
import { INDEX_AT, md5Hex, planIndex, refreshAfter, uidOf, type IndexPlan } from './index-plan.js'
import { nowSeconds } from './lifetime.js'
import { applyIndex, readList, removeFromIndex, type AddOptions, type IndexPlace } from './principal.js'

type Data = Record<string, unknown>

/** Session id -> when a rolling tie in this process last rewrote its index (Unix s); oldest first. */
const keptAlive = new Map<string, number>()
const KEPT_ALIVE_MEMORY = 10_000

/** What the index of one session needs from its configuration. */
export interface IndexConfig {
  place: IndexPlace
  /** seconds, 0 = never */
  ttl: number
  principal: { field: string; maxSessions: number | undefined } | undefined
}

export class SessionIndex {
  /** The uid the index lists the session under now (undefined: none). */
  private listed: string | undefined
  /** The last index write failed: the next write writes the index again, even with no change. */
  failed = false

  constructor(
    private readonly config: IndexConfig,
    data: Data,
  ) {
    this.loaded(data)
  }

  /** After a load or reload: the index lists the session under the uid the data names. */
  loaded(data: Data): void {
    const field = this.config.principal?.field
    this.listed = field === undefined ? undefined : uidOf(data[field])
  }

  /**
   * Stamps the principal's fields into `data` for a write (see planIndex) and says what the write
   * must do to the index; `stamped` gets the top-level keys it changed.
   */
  prepare(data: Data, stamped: Set<string>, force = false): IndexPlan | undefined {
    const principal = this.config.principal
    if (principal === undefined) return undefined
    const planned = planIndex(data, principal.field, this.listed, this.config.ttl, force || this.failed)
    for (const key of planned.stamped) stamped.add(key)
    return planned.plan
  }

  /** Writes `plan` to the index after session `id`'s own write; `replaces` is the id a regenerate left. */
  async write(id: string, plan: IndexPlan | undefined, replaces: string | undefined, listRead: AddOptions['listRead']): Promise<void> {
    const { place, ttl, principal } = this.config
    if (plan === undefined) {
      if (replaces !== undefined && this.listed !== undefined) await removeFromIndex(place, md5Hex(this.listed), [replaces])
      return
    }
    this.failed = true
    await applyIndex(place, plan, { id, ttl, maxSessions: principal?.maxSessions, replaces, listRead })
    this.failed = false
    this.listed = plan.to
  }

  /**
   * When a write will write a user's index: that user's list, read now so that the read travels
   * with the session's own write (one round trip fewer; a stale read only costs a retry).
   */
  readAhead(plan: IndexPlan | undefined): AddOptions['listRead'] {
    if (plan?.to === undefined) return undefined
    const digest = md5Hex(plan.to)
    const entry = readList(this.config.place, digest)
    entry.catch(() => {}) // unused when the session's write fails
    return { digest, entry }
  }

  /**
   * After a rolling tie extended session `id` without writing it: when the index was last written
   * (`_index_at`) longer than refreshAfter(ttl) ago, it is written again, so that it outlives the
   * session as a save's refresh would make it; once per refreshAfter per session in this process
   * (the session's `_index_at` is not rewritten: that would be a write of the session).
   */
  async keepAlive(id: string, data: Data): Promise<void> {
    const { place, ttl, principal } = this.config
    if (principal === undefined || this.listed === undefined) return
    const now = nowSeconds()
    const after = refreshAfter(ttl)
    const at = data[INDEX_AT]
    if (typeof at === 'number' && at <= now && now - at < after) return
    const last = keptAlive.get(id)
    if (last !== undefined && now - last < after) return
    await applyIndex(place, { from: this.listed, to: this.listed, login: false }, { id, ttl, maxSessions: principal.maxSessions })
    keptAlive.delete(id)
    keptAlive.set(id, now)
    if (keptAlive.size > KEPT_ALIVE_MEMORY) keptAlive.delete(keptAlive.keys().next().value!)
  }

  /** Takes session `id` out of its user's list (destroy). */
  async remove(id: string): Promise<void> {
    if (this.listed !== undefined) await removeFromIndex(this.config.place, md5Hex(this.listed), [id])
    this.listed = undefined
  }
}
