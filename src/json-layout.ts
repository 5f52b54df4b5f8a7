/**
 * Saves that write again only what changed. A `json` session's text is an object's members,
 * `{"k1":v1,"k2":v2}`; when this process wrote that text itself, it knows where each member ends,
 * and a save that changed a few top-level keys copies the other members' text from it instead of
 * writing their values out again (JSON.stringify is about half of a save's CPU, and a request
 * typically changes one key). The result is the very text `json.stringify(data)` gives.
 *
 * Why a copied member is right: every top-level key the session did not change since it read or
 * wrote `source` holds its value in `source` (the invariant the merge bases already rest on,
 * merge-bases.ts), and a text this process wrote is `json.stringify`'s own, so parsing a member
 * and writing it out again gives the same text. Texts written by anyone else have no layout here:
 * a layout is only ever found for a text read at the version this process's own write got back
 * (see {@link knownText}).
 */
import { ID_FIELD } from './tracker.js'

/** Where the members of a JSON object text end (the offset after each), with their keys, in order. */
export class Layout {
  constructor(
    readonly keys: readonly string[],
    readonly ends: readonly number[],
  ) {}
}

/**
 * What this process knows of a session's text: its layout, or only that it wrote it (`'ours'`:
 * its next save writes it out member by member to learn the layout; a text saved once is not
 * worth that cost, a session saved again is).
 */
export type Known = Layout | 'ours'

/** Writes a value out as the `json` serializer does (ASCII text; undefined for what JSON leaves out). */
type Write = (value: unknown) => string | undefined

/** A value whose text inside an object can differ from its text alone: its toJSON is called with its key. */
const hasToJson = (value: unknown): boolean =>
  typeof value === 'object' && value !== null && typeof (value as { toJSON?: unknown }).toJSON === 'function'

/** `"key":value` as json writes it inside an object; undefined when it would be left out or written differently there. */
function member(key: string, value: unknown, write: Write): string | undefined {
  const text = hasToJson(value) ? undefined : write(value)
  return text === undefined ? undefined : write(key)! + ':' + text
}

/**
 * `data`'s text member by member, with its layout; undefined when a member would be left out or
 * written differently inside the object (then the caller writes the whole object).
 */
export function memberwise(data: Record<string, unknown>, write: Write): { text: string; layout: Layout } | undefined {
  const keys = Object.keys(data)
  const ends = new Array<number>(keys.length)
  let text = '{'
  for (let i = 0; i < keys.length; i++) {
    const piece = member(keys[i]!, data[keys[i]!], write)
    if (piece === undefined) return undefined
    text += (i === 0 ? '' : ',') + piece
    ends[i] = text.length
  }
  return checked({ text: text + '}', layout: new Layout(keys, ends) }, data, write)
}

/**
 * `data`'s text made from `source` (laid out as `layout`): the members of the keys `changed`
 * names (and the id, which a session sets without a change) written again, the others copied.
 * Undefined when `data` no longer has `layout`'s keys in that order (a key added or deleted: the
 * caller writes it out anew), or a changed member cannot be written alone.
 */
export function spliced(
  source: string,
  layout: Layout,
  data: Record<string, unknown>,
  changed: ReadonlySet<string>,
  write: Write,
): { text: string; layout: Layout } | undefined {
  const { keys, ends } = layout
  const now = Object.keys(data)
  if (now.length !== keys.length) return undefined
  for (let i = 0; i < now.length; i++) if (now[i] !== keys[i]) return undefined
  const out = new Array<number>(keys.length)
  let text = '{'
  let length = 1
  /** The run of copied members not appended yet: from `from` (its leading comma included) to `to` in source. */
  let from = -1
  let to = -1
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!
    const start = i === 0 ? 1 : ends[i - 1]! + 1
    const comma = i === 0 ? 0 : 1
    if (!changed.has(key) && key !== ID_FIELD) {
      if (from < 0) from = start - comma
      to = ends[i]!
      length += comma + ends[i]! - start
    } else {
      const piece = member(key, data[key], write)
      if (piece === undefined) return undefined
      if (from >= 0) text += source.slice(from, to)
      from = -1
      text += (comma === 1 ? ',' : '') + piece
      length += comma + piece.length
    }
    out[i] = length
  }
  if (from >= 0) text += source.slice(from, to)
  return checked({ text: text + '}', layout: new Layout(keys, out) }, data, write)
}

/**
 * The test suite turns this on (test/helpers/layout-check.ts): every text made here is then
 * compared with the whole object written out, and a difference throws.
 */
export const selfCheck = { on: false }

/** `made`, once the self-check (when on) found it equal to `data` written out whole. */
function checked<T extends { text: string }>(made: T, data: Record<string, unknown>, write: Write): T {
  if (selfCheck.on && made.text !== write(data)) {
    throw new Error(`tied-session: a text made member by member differs from the whole: ${made.text} vs ${write(data)}`)
  }
  return made
}

/** At most this many sessions' texts are remembered per store (the least recently written go first). */
const MAX_REMEMBERED = 5000

/** A text this process wrote at a key: the version the store gave it, its length, and what is known of it. */
interface Wrote {
  readonly version: string
  readonly length: number
  readonly known: Known
}

/**
 * The texts this process last wrote, per store and key (oldest first). Only their versions and
 * layouts are kept, not the texts: a read that gives the version this process wrote gives the text
 * it wrote (what compare-and-swap itself rests on), and keeping ~1 KB per session for as long as it
 * lives turned into old-generation garbage at every save (measured: the major GCs ate the gain).
 */
const remembered = new WeakMap<object, Map<string, Wrote>>()

/**
 * What this process knows of `text`, read from `store` at `key` with `version`: something only
 * when it is the text it last wrote there (same version, same length, a member ending at each
 * place the layout says).
 */
export function knownText(store: object, key: string, text: string, version: string | undefined): Known | undefined {
  if (version === undefined) return undefined
  const entry = remembered.get(store)?.get(key)
  if (entry === undefined || entry.version !== version || entry.length !== text.length) return undefined
  const { known } = entry
  if (known !== 'ours') {
    const { ends } = known
    for (let i = 0; i < ends.length; i++) if (text.charCodeAt(ends[i]!) !== (i === ends.length - 1 ? 0x7d : 0x2c)) return undefined
  }
  return known
}

/** `text` was just written to `store` at `key` by this process, and given `version` (undefined: not told, nothing is kept). */
export function wrote(store: object, key: string, version: string | undefined, text: string, layout: Layout | undefined): void {
  let texts = remembered.get(store)
  if (version === undefined) {
    texts?.delete(key)
    return
  }
  if (texts === undefined) remembered.set(store, (texts = new Map()))
  texts.delete(key) // set again: the most recent goes last
  texts.set(key, { version, length: text.length, known: layout ?? 'ours' })
  if (texts.size > MAX_REMEMBERED) texts.delete(texts.keys().next().value!)
}

/** `key` in `store` no longer holds what this process wrote (destroyed, moved). */
export function forget(store: object, key: string): void {
  remembered.get(store)?.delete(key)
}
