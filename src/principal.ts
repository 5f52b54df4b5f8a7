/**
 * The reverse index from a user id to that user's sessions, as Apache::Session::Memorycached
 * writes it, and better:
 *
 * - `md5_hex(uid)` holds the id of the user's latest saved session (a plain string, byte for
 *   byte what Memorycached writes, so Perl readers keep working), with the session's TTL;
 * - `md5_hex(uid) + ':sessions'` lists ALL of the user's sessions as JSON
 *   `[{ "id": "...", "exp": <unix s, 0 = never>, "ttl": <the session's ttl, s>, "at": <unix ms of the last index write> }]`,
 *   newest login first, updated with compare-and-swap, pruned of dead sessions, capped at
 *   {@link MAX_INDEXED} entries.
 *
 * Neither key expires before a session it lists, and neither is rewritten on every save: a save
 * writes the index only when the user id changed or the index is older than
 * {@link refreshAfter}(ttl) (the session itself carries `_index_at`, when its index was last
 * written), and the index keys live {@link refreshAfter}(ttl) + ttl + 1 s past that write, longer
 * than any save made before the next refresh can keep the session.
 */
import { backoff } from './backoff.js'
import { SessionError } from './errors.js'
import { isIndexValue, md5Hex, refreshAfter, type IndexPlan } from './index-plan.js'
import { asText, type Entry, type Head, type Store } from './stores/store.js'

/** Most sessions one user's list keeps; past it the oldest entries are dropped from the list (not destroyed). */
export const MAX_INDEXED = 100
/** Compare-and-swap rounds on a user's list before ERR_CONFLICT: enough for dozens of concurrent logins. */
const MAX_TRIES = 60

/** One entry of a user's session list. */
export interface IndexEntry {
  id: string
  /** Unix seconds when the session expires at the latest; 0 = never. */
  exp: number
  /** The session's TTL in seconds (0 = never): how far a live entry past its `exp` is moved on. */
  ttl?: number
  /** Unix ms of the session's login (when it was first listed under this user): the order of "newest first". */
  at: number
}

/** Where a user's index lives: a store, the key namespace and the session TTL. */
export interface IndexPlace {
  store: Store
  namespace: string
}

const nowSeconds = () => Math.floor(Date.now() / 1000)
const expOf = (ttl: number) => (ttl === 0 ? 0 : nowSeconds() + ttl)
const listKey = (place: IndexPlace, digest: string) => `${place.namespace}${digest}:sessions`
const latestKey = (place: IndexPlace, digest: string) => place.namespace + digest

function parseList(text: string): IndexEntry[] {
  try {
    const list: unknown = JSON.parse(text)
    if (Array.isArray(list)) {
      return list.filter((e): e is IndexEntry => typeof e?.id === 'string' && typeof e.exp === 'number' && typeof e.at === 'number')
    }
  } catch {
    // a list another tool broke is rebuilt from what this write knows
  }
  return []
}

/**
 * The latest an entry's session can live without another index write: a save just before the next
 * refresh is due keeps the session `ttl` more seconds (+1 s: expiry is counted in whole seconds).
 */
function deadline(e: IndexEntry): number {
  return e.ttl === undefined || e.ttl === 0 ? e.exp + 1 : e.exp + refreshAfter(e.ttl) + 1
}

/** The TTL that keeps a list (or latest key) alive as long as its longest-living entry can live (0: never expires). */
function listTtl(list: IndexEntry[]): number {
  if (list.some((e) => e.exp === 0)) return 0
  const last = Math.max(0, ...list.map(deadline))
  return Math.max(1, last - nowSeconds())
}

/**
 * Checks that listed sessions still exist and drops the ones that are gone: the entries whose
 * recorded expiry passed, or every entry with `all`. A live entry past its expiry was saved again
 * since it was listed, so its expiry moves on by its session's ttl.
 */
async function prune(place: IndexPlace, list: IndexEntry[], fallbackTtl: number, all = false): Promise<IndexEntry[]> {
  const now = nowSeconds()
  const kept = await Promise.all(
    list.map(async (e) => {
      const expired = e.exp !== 0 && e.exp <= now
      if (!expired && !all) return e
      const alive = (await head(place, place.namespace + e.id)) !== undefined
      if (!alive) return undefined
      return expired ? { ...e, exp: expOf(e.ttl ?? fallbackTtl) } : e
    }),
  )
  return kept.filter((e): e is IndexEntry => e !== undefined)
}

/**
 * Reads a user's list, lets `change` rewrite it, and writes it back with compare-and-swap,
 * retrying on a concurrent writer. Returns the list as written (or as read, when unchanged).
 */
export async function updateList(
  place: IndexPlace,
  digest: string,
  change: (list: IndexEntry[]) => IndexEntry[] | Promise<IndexEntry[]>,
  firstRead?: Promise<Entry | undefined>,
): Promise<IndexEntry[]> {
  const key = listKey(place, digest)
  for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
    // a read sent earlier may be stale by now: then the compare-and-swap fails and the list is read again
    const entry = await (attempt === 0 && firstRead !== undefined ? firstRead : readList(place, digest))
    const before = entry === undefined ? [] : parseList(asText(entry.value))
    const after = (await change(before)).sort((a, b) => b.at - a.at).slice(0, MAX_INDEXED)
    const text = JSON.stringify(after)
    if (entry !== undefined && text === entry.value) return after
    let result
    if (entry === undefined) {
      if (after.length === 0) return after
      result = await place.store.write(key, text, { ttl: listTtl(after), mode: 'add' })
    } else {
      // an emptied list is left to expire within a second rather than deleted: a delete could
      // remove an entry that a concurrent login adds between our write and the delete
      const ttl = after.length === 0 ? 1 : listTtl(after)
      result = await place.store.write(key, text, { ttl, mode: 'cas', version: entry.version ?? '' })
    }
    if (result === 'stored') return after
    // another process wrote the list first: back off a little, at random, and read it again
    await backoff(attempt, 2, 50)
  }
  throw new SessionError('ERR_CONFLICT', `the session list of user ${digest} kept changing (${MAX_TRIES} tries); save again`)
}

/** The user's list as stored now (with its version): read ahead, it lets {@link addToIndex} save a round trip. */
export function readList(place: IndexPlace, digest: string): Promise<Entry | undefined> {
  return place.store.get(listKey(place, digest), { consistent: true })
}

/** Options for adding a session to its user's index. */
export interface AddOptions {
  id: string
  /** the session's TTL in seconds, 0 = never */
  ttl: number
  /** destroy the user's oldest sessions past this many */
  maxSessions: number | undefined
  /**
   * True for a new login (the session was not listed under this user): it sorts first and the
   * latest-session key names it. False for a refresh: it keeps its place, or when it is missing
   * from the list (pruned, evicted, or the list was lost) it goes last, so that a session saving
   * while a newer login evicts it never evicts that newer login.
   */
  login: boolean
  /** The id this session had before `regenerate`: taken out of the list in the same update, its place kept. */
  replaces?: string | undefined
  /** {@link readList} of the user's list, sent earlier (with the session's own write); it may be stale. */
  listRead?: { digest: string; entry: Promise<Entry | undefined> } | undefined
}

/** Seconds the latest-session key lives after an index write for a session with `ttl`: as long as the session can. */
const latestTtl = (ttl: number) => (ttl === 0 ? 0 : refreshAfter(ttl) + ttl + 1)

/** Lists session `id` under the user (see {@link AddOptions.login}), keeps the latest-session key, enforces maxSessions. */
export async function addToIndex(place: IndexPlace, digest: string, options: AddOptions): Promise<void> {
  const { id, ttl, maxSessions, login, replaces, listRead } = options
  const evicted: string[] = []
  // the latest-session key, as Memorycached writes it: the id as a plain string; at a login it is
  // sent at once, alongside the list's update (one round trip fewer)
  const latest = login ? place.store.write(latestKey(place, digest), id, { ttl: latestTtl(ttl), mode: 'set' }) : undefined
  latest?.catch(() => {}) // awaited below; a failed list update must not leave it unhandled
  const list = await updateList(
    place,
    digest,
    async (list) => {
      evicted.length = 0
      const kept = list.find((e) => e.id === id) ?? list.find((e) => e.id === replaces)
      const others = await prune(
        place,
        list.filter((e) => e.id !== id && e.id !== replaces),
        ttl,
      )
      const oldest = Math.min(Date.now(), ...others.map((e) => e.at - 1))
      const at = login ? Date.now() : (kept?.at ?? oldest)
      const next = [{ id, exp: expOf(ttl), ttl, at }, ...others].sort((a, b) => b.at - a.at)
      if (maxSessions !== undefined && next.length > maxSessions) {
        evicted.push(...next.slice(maxSessions).map((e) => e.id))
        return next.slice(0, maxSessions)
      }
      return next
    },
    listRead?.digest === digest ? listRead.entry : undefined,
  )
  await latest
  if (!login) await keepLatest(place, digest, list, replaces, ttl)
  for (const old of evicted) await place.store.delete(place.namespace + old)
}

/**
 * After a refresh: the latest-session key lives on (touched) and names what it named, unless that
 * was the id a regenerate replaced; when it is gone it is added back for the newest login.
 */
async function keepLatest(place: IndexPlace, digest: string, list: IndexEntry[], replaces: string | undefined, ttl: number): Promise<void> {
  if (replaces !== undefined) await repointLatest(place, digest, new Set([replaces]), list)
  if (await place.store.touch(latestKey(place, digest), latestTtl(ttl))) return
  const newest = list[0]
  // add, not set: a login that wrote the key meanwhile is never overwritten
  if (newest !== undefined) await place.store.write(latestKey(place, digest), newest.id, { ttl: listTtl(list), mode: 'add' })
}

/**
 * Writes what `plan` says to the user index of session `add.id`, after the session's own write:
 * moves it out of the old user's list when the uid changed, and lists it under the new one.
 */
export async function applyIndex(place: IndexPlace, plan: IndexPlan, add: Omit<AddOptions, 'login'>): Promise<void> {
  const { from, to } = plan
  if (from !== undefined && from !== to) await removeFromIndex(place, md5Hex(from), [add.id, ...(add.replaces ? [add.replaces] : [])])
  if (to !== undefined) await addToIndex(place, md5Hex(to), { ...add, login: plan.login, replaces: from === to ? add.replaces : undefined })
}

/** Removes sessions `ids` from the user's list; the latest key is rewritten only if it named one of them. */
export async function removeFromIndex(place: IndexPlace, digest: string, ids: string[]): Promise<void> {
  const gone = new Set(ids)
  const list = await updateList(place, digest, (entries) => entries.filter((e) => !gone.has(e.id)))
  await repointLatest(place, digest, gone, list)
}

/**
 * Points the latest-session key at the newest session left in `list` if it names one of `gone`
 * (compare-and-swap, so a newer login is never overwritten). With none left it is set to an
 * empty string that expires within a second: memcached has no conditional delete.
 */
async function repointLatest(place: IndexPlace, digest: string, gone: Set<string>, list: IndexEntry[]): Promise<void> {
  const key = latestKey(place, digest)
  for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
    const latest = await place.store.get(key, { consistent: true })
    if (latest === undefined || !gone.has(asText(latest.value))) return
    const next = list.find((e) => !gone.has(e.id))
    const [value, ttl] = next === undefined ? ['', 1] : [next.id, listTtl(list)]
    const result = await place.store.write(key, value, { ttl, mode: 'cas', version: latest.version ?? '' })
    if (result !== 'exists') return
  }
}

/**
 * The ids of the user's live sessions, newest first; entries whose session no longer exists are
 * dropped from the list.
 */
export async function liveSessions(place: IndexPlace, digest: string, ttl: number): Promise<string[]> {
  // the list and the latest-session key are read together; a latest session the list names is
  // looked at once, by the list's prune, not a second time
  const named = latestNamed(place, digest)
  named.catch(() => undefined) // awaited in the prune below; unused if the list read fails
  let latest: string | undefined
  const list = await updateList(place, digest, async (entries) => {
    const id = await named
    const unlisted = id !== undefined && !entries.some((e) => e.id === id)
    const [kept, alive] = await Promise.all([prune(place, entries, ttl, true), unlisted ? isSession(place, id) : false])
    latest = alive ? id : undefined
    return kept
  })
  const ids = list.map((e) => e.id)
  // a session only Perl indexed (Memorycached writes md5_hex(uid) -> id and no list): the newest login
  return latest !== undefined && !ids.includes(latest) ? [latest, ...ids] : ids
}

/**
 * The live session the bare `md5_hex(uid)` key names, or undefined: the one index
 * Apache::Session::Memorycached writes (`$m->set(md5_hex($uid), $id)`), so that sessions Perl
 * logged in are found too.
 */
async function latestSession(place: IndexPlace, digest: string): Promise<string | undefined> {
  const id = await latestNamed(place, digest)
  return id !== undefined && (await isSession(place, id)) ? id : undefined
}

/** The id the bare `md5_hex(uid)` key names, when it holds one. */
async function latestNamed(place: IndexPlace, digest: string): Promise<string | undefined> {
  const latest = await place.store.get(latestKey(place, digest), { consistent: true })
  const id = latest === undefined ? '' : asText(latest.value)
  return /^[A-Za-z0-9_-]{1,128}$/.test(id) ? id : undefined
}

/** Whether `id` is a live session (not gone, and no index value). */
async function isSession(place: IndexPlace, id: string): Promise<boolean> {
  const key = place.namespace + id
  const found = await head(place, key)
  if (found === undefined) return false
  // An index value is no session (a key that holds a digest, an id or the empty string): '' or 32
  // hex digits, so 0 or 32 bytes. A value of any other size cannot be one; only those two sizes
  // have their value read to tell, so the check stays exact without reading every session.
  if (found.size !== 0 && found.size !== 32) return true
  const session = await place.store.get(key, { consistent: true })
  return session !== undefined && !isIndexValue(asText(session.value))
}

/**
 * Whether `key` exists, and its size: {@link Store.head} where the store has it (memcached with
 * meta commands sends no value), else a `get` (consistent) whose value is only measured.
 */
async function head(place: IndexPlace, key: string): Promise<Head | undefined> {
  if (place.store.head !== undefined) return place.store.head(key)
  const entry = await place.store.get(key, { consistent: true })
  return entry === undefined ? undefined : { size: Buffer.byteLength(entry.value) }
}

/**
 * Destroys every session listed for the user and takes them out of the index (sessions a
 * concurrent login adds meanwhile stay); returns how many sessions were destroyed.
 */
export async function destroyAll(place: IndexPlace, digest: string): Promise<number> {
  const [listed, latest] = await Promise.all([readList(place, digest), latestSession(place, digest)])
  const ids = listed === undefined ? [] : parseList(asText(listed.value)).map((e) => e.id)
  if (latest !== undefined && !ids.includes(latest)) ids.push(latest) // logged in by Perl: only md5_hex(uid) names it
  const deleted = await Promise.all(ids.map((id) => place.store.delete(place.namespace + id)))
  const gone = new Set(ids)
  const list = await updateList(place, digest, (entries) => entries.filter((e) => !gone.has(e.id)))
  await repointLatest(place, digest, gone, list)
  return deleted.filter(Boolean).length
}
