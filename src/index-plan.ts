/**
 * What a session's write means for its user's index, decided from the session's data alone: the
 * user id (`uidOf`), its md5 key (`md5Hex`, as Perl's Digest::MD5), the fields a write stamps
 * (`<field>_MD5`, `_index_at`), and whether the index must be written with it (`planIndex`).
 * The index's keys themselves are principal.ts's.
 */
import SparkMD5 from 'spark-md5'

const nowSeconds = () => Math.floor(Date.now() / 1000)

/**
 * md5 hex of a user id with the bytes Perl's Digest::MD5 hashes for a character string: Latin-1
 * when every character is at most U+00FF, UTF-8 otherwise.
 *
 * @example
 * md5Hex('dwho') // '5efe8af397fc3577e05b483aca964f1b'
 */
export function md5Hex(uid: string): string {
  // hashBinary takes one byte per char code; hash() encodes to UTF-8 first
  // eslint-disable-next-line no-control-regex -- Latin-1 is U+0000-U+00FF, control chars included
  return /^[\u0000-\u00ff]*$/.test(uid) ? SparkMD5.hashBinary(uid) : SparkMD5.hash(uid)
}

/** The session field that says when the session's user index was last written (Unix seconds). */
export const INDEX_AT = '_index_at'

/** Seconds after an index write when a save writes the index again (a session that never expires: never). */
export function refreshAfter(ttl: number): number {
  return ttl === 0 ? Infinity : Math.max(1, Math.floor(ttl / 2))
}

/** The user id in a principal field: a non-empty string or a finite number, else none. */
export function uidOf(value: unknown): string | undefined {
  if (typeof value === 'string' && value !== '') return value
  if (typeof value === 'number' && Number.isFinite(value)) return String(value)
  return undefined
}

/**
 * True for a value that the index itself stores under a key that looks like a session id: the
 * latest-session key `md5_hex(uid)` holds a session id (32 hex chars, as Memorycached writes
 * it), or an empty string once emptied. No serializer writes a session as either.
 */
export function isIndexValue(text: string): boolean {
  return text === '' || /^[0-9a-f]{32}$/.test(text)
}

/** What a write of a session must do to its user's index. */
export interface IndexPlan {
  /** The uid the index lists the session under now (undefined: none). */
  from: string | undefined
  /** The uid it must be listed under after the write (undefined: none). */
  to: string | undefined
  /** True when `to` is a new login of this session (it was not listed under `to`): it sorts first. */
  login: boolean
}

/**
 * Prepares `data` for a write: stamps `<field>_MD5` (md5_hex of the uid, as Memorycached does)
 * and, when the index must be written with this write, {@link INDEX_AT}. The index must be
 * written when the uid is not the one it is listed under (`listed`), when `force` is set, or when
 * the last index write is older than {@link refreshAfter}(ttl). Returns the top-level keys it
 * changed and the plan, or no plan when the index is fresh.
 */
export function planIndex(
  data: Record<string, unknown>,
  field: string,
  listed: string | undefined,
  ttl: number,
  force = false,
): { stamped: string[]; plan: IndexPlan | undefined } {
  const uid = uidOf(data[field])
  const stamped: string[] = []
  const set = (name: string, value: unknown) => {
    if (value === undefined ? !Object.hasOwn(data, name) : data[name] === value) return
    if (value === undefined) delete data[name]
    else data[name] = value
    stamped.push(name)
  }
  set(`${field}_MD5`, uid === undefined ? undefined : md5Hex(uid))
  const at = data[INDEX_AT]
  const now = nowSeconds()
  const fresh = uid === listed && !force && typeof at === 'number' && at <= now && now - at < refreshAfter(ttl)
  if (uid === undefined) set(INDEX_AT, undefined)
  else if (!fresh) set(INDEX_AT, now)
  if (fresh || (uid === undefined && listed === undefined)) return { stamped, plan: undefined }
  return { stamped, plan: { from: listed, to: uid, login: uid !== undefined && uid !== listed } }
}
