/**
 * A session as the store holds it: parsing its text, booking a new id, and the errors for a
 * session that is not there or whose lock could not be released after a failure.
 */
import { SessionError, notFound } from './errors.js'
import { newId } from './ids.js'
import type { Lease } from './lease.js'
import { isIndexValue } from './index-plan.js'
import { json } from './json.js'
import { MAX_DEPTH, checkDepth, type Serializer } from './serializers.js'
import type { SessionConfig } from './session.js'
import { ttlNow } from './lifetime.js'
import { ID_FIELD } from './tracker.js'
import { formFor, toStored } from './stored-form.js'

type Data = Record<string, unknown>

export { notFound } from './errors.js'

/**
 * Writes `data` under `id` with `add`, so that a session already stored under it is never
 * overwritten: resolves to undefined then. With `acquire`, the id's lock is taken before the
 * `add` (and released again when the add finds the id taken), so that no one can tie the session
 * before its holder, and a lock that cannot be taken leaves no session behind.
 */
export async function bookId(
  config: SessionConfig,
  id: string,
  data: Data,
  acquire: SessionConfig['acquire'],
): Promise<{ text: string; lease: Lease | undefined; version: string | undefined } | undefined> {
  const key = config.namespace + id
  const text = config.serializer.stringify({ ...data, [ID_FIELD]: id })
  const { value, flags } = toStored(formFor(config.serializer), text)
  const lease = await acquire?.(key)
  let result
  let version: string | undefined // told by a store that knows it (memcached's ms … c): the first save needs no read
  try {
    const onVersion = (written: string) => (version = written)
    result = await config.store.write(key, value, { ttl: ttlNow(config, data, id), mode: 'add', onVersion, ...(flags ? { flags } : {}) })
  } catch (err) {
    throw await releasing(err, lease && (() => lease.unlock()))
  }
  if (result === 'stored') return { text, lease, version }
  await lease?.unlock()
  return undefined
}

/**
 * Writes `data` under a new id with `add` (see {@link bookId}); a colliding id is never
 * overwritten: a new id is tried then, at most 5 in all. Returns the id, the text written and the
 * lock's lease.
 */
export async function bookNewId(
  config: SessionConfig,
  data: Data,
  acquire: SessionConfig['acquire'],
): Promise<{ id: string; text: string; lease: Lease | undefined; version: string | undefined }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const id = newId()
    const booked = await bookId(config, id, data, acquire)
    if (booked) return { id, ...booked }
  }
  throw new SessionError('ERR_CONFLICT', 'could not book a new session id after 5 tries; is the store answering add correctly?')
}

/**
 * Parses stored text into session data, or ERR_CORRUPT; a key that holds an index value is no
 * session. `ours`: a text this process wrote (json-layout.ts knownText), whose data passed the
 * depth check when it was written: not counted again.
 */
export function parseData(serializer: Serializer, text: string, id: string, ours = false): Data {
  if (isIndexValue(text)) throw notFound(id, 'the key holds a user index entry, not a session')
  let data: unknown
  try {
    data = serializer.parse(text)
  } catch (cause) {
    // the Storable reader's own ERR_CORRUPT names what only Perl can rebuild (a blessed class, SX_HOOK)
    if (cause instanceof SessionError)
      throw new SessionError('ERR_CORRUPT', `session ${id}: ${cause.message.replace(/^tied-session: /, '')}`, { cause })
    throw new SessionError(
      'ERR_CORRUPT',
      `session ${id} holds data the ${serializer.name} serializer cannot read; destroy it or fix the serializer`,
      { cause },
    )
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new SessionError('ERR_CORRUPT', `session ${id} does not hold an object; destroy it`)
  }
  try {
    // JSON text opens each object or array with a bracket: with no more brackets than the limit,
    // the data cannot be nested past it, and the walk is skipped (it ran on every tie)
    if (!ours && (serializer !== json || bracketsOver(text, MAX_DEPTH))) checkDepth(data, '', 0)
  } catch (cause) {
    throw new SessionError('ERR_CORRUPT', `session ${id} holds data nested deeper than ${MAX_DEPTH} levels; destroy it`, { cause })
  }
  return data as Data
}

/** True when `text` holds more than `limit` of the characters `{` and `[` (in strings too: an over-count only costs a walk). */
function bracketsOver(text: string, limit: number): boolean {
  let count = 0
  for (let at = text.indexOf('{'); at >= 0; at = text.indexOf('{', at + 1)) if (++count > limit) return true
  for (let at = text.indexOf('['); at >= 0; at = text.indexOf('[', at + 1)) if (++count > limit) return true
  return false
}

/**
 * Runs `release` after `error`, and returns what to throw: `error` itself, or when the release
 * fails too, an AggregateError of both (the first error first).
 */
export async function releasing(error: unknown, release: (() => Promise<void>) | undefined): Promise<unknown> {
  try {
    await release?.()
  } catch (releaseError) {
    return new AggregateError(
      [error, releaseError],
      'tied-session: the operation failed, and releasing the lock failed too (errors: [the failure, the release failure])',
    )
  }
  return error
}
